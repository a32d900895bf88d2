//! What the driver needs of an object store, and the two stores it runs on.

use object_store::ObjectStore;
use object_store::aws::AmazonS3;
use object_store::memory::InMemory;
use object_store::multipart::MultipartStore;
use object_store::signer::Signer;

/// What the driver needs of an object store: objects, multipart uploads by id and, where the
/// store has them, presigned URLs.
pub(super) trait Backend: ObjectStore + MultipartStore {
    fn signer(&self) -> Option<&dyn Signer>;
}

impl Backend for AmazonS3 {
    fn signer(&self) -> Option<&dyn Signer> {
        Some(self)
    }
}

impl Backend for InMemory {
    fn signer(&self) -> Option<&dyn Signer> {
        None
    }
}
