//! What loading the configuration reports besides errors.

/// Something worth telling the user about the configuration that does not stop start-up (an
/// ignored key, a setting with no effect). Loading happens before logging is set up, so notes
/// are collected and logged by the caller.
#[derive(Clone, Debug)]
pub struct ConfigNote {
    /// A warning (the configuration asks for something Wharf will not do), else information.
    pub warning: bool,
    pub message: String,
}

impl ConfigNote {
    pub fn warn(message: String) -> Self {
        ConfigNote { warning: true, message }
    }
    pub fn info(message: String) -> Self {
        ConfigNote {
            warning: false,
            message,
        }
    }
    pub fn log(&self) {
        if self.warning {
            tracing::warn!("configuration: {}", self.message);
        } else {
            tracing::info!("configuration: {}", self.message);
        }
    }
}
