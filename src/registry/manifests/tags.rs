//! Tags: `<tag>/current/link` files, replaced atomically, with an index link per digest a tag
//! has pointed at.

use std::time::SystemTime;

use crate::error::Result;
use crate::registry::content::Reference;
use crate::registry::digest::Digest;
use crate::registry::names::{RepoName, Tag};
use crate::registry::{Registry, paths};

impl Registry {
    pub async fn resolve_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Digest> {
        match self.read_link(&paths::tag_current(repo, tag)).await? {
            Some(d) => Ok(d),
            None => Err(self.manifest_unknown(repo, Reference::Tag(tag.clone())).await),
        }
    }

    /// A tag and when its link was last written: for a pull-through cache, when the tag was
    /// last found current upstream ([`Registry::touch_tag`]).
    pub(crate) async fn tag_with_time(&self, repo: &RepoName, tag: &Tag) -> Result<Option<(Digest, SystemTime)>> {
        let link = paths::tag_current(repo, tag);
        let Some(d) = self.read_link(&link).await? else {
            return Ok(None);
        };
        match self.driver.stat(&link).await {
            Ok(fi) => Ok(Some((d, fi.modified))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Rewrite a tag's link unchanged, recording that the upstream still has it there.
    pub(crate) async fn touch_tag(&self, repo: &RepoName, tag: &Tag, d: &Digest) -> Result<()> {
        let _g = self.repo_lock(repo).await;
        // Only if no newer answer moved the tag meanwhile.
        let link = paths::tag_current(repo, tag);
        if self.read_link(&link).await?.as_ref() == Some(d) {
            // A real rewrite (not `write_link`, which may leave it as it is): its time is the point.
            self.driver
                .put_content(&link, bytes::Bytes::from(d.to_string()))
                .await?;
        }
        Ok(())
    }

    /// Delete a tag only; the manifest stays reachable by digest.
    pub async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<()> {
        self.require_delete()?;
        self.check_gc_lock().await?;
        let _g = self.repo_lock(repo).await;
        self.resolve_tag(repo, tag).await?;
        self.tag_index.invalidate(repo);
        self.driver.delete(&paths::tag_dir(repo, tag)).await?;
        Ok(())
    }

    /// Every tag of a repository, sorted.
    pub(crate) async fn all_tags(&self, repo: &RepoName) -> Result<Vec<Tag>> {
        if self.driver.capabilities().object_store {
            // Object stores: tags are the `<tag>/current/link` keys, since an emptied (deleted)
            // tag's prefix may still be listed for a while by some services.
            let keys = self.driver.list_recursive(&paths::tags_dir(repo)).await?;
            let mut tags: Vec<Tag> = keys
                .iter()
                .filter_map(|k| k.strip_suffix("/current/link"))
                .filter_map(Tag::parse)
                .collect();
            tags.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            return Ok(tags);
        }
        match self.driver.list(&paths::tags_dir(repo)).await {
            Ok(names) => Ok(names.iter().filter_map(|n| Tag::parse(n)).collect()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}
