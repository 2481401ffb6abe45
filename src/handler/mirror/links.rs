//! Hard links: the first name of a multi-link source file placed in a
//! batch is remembered, and its other names become links to it.

use super::sys::{self, raw, FileType, Meta};
use super::{At, Outcome, Run, R};
use crate::path;

impl Run<'_> {
    /// Remembers where the multi-link source file `src` (at `at`) now is in
    /// the destination, for its other names in this batch.
    pub(super) fn note_link(&mut self, at: &At, src: &Meta) -> R<()> {
        if let Some(d) = sys::lstat_at(at.dst, at.name).map_err(|e| self.derr(at.rel, e))? {
            if d.ftype == FileType::Regular {
                self.links.insert(src.id(), (at.rel.to_vec(), d.id()));
            }
        }
        Ok(())
    }

    /// Hard links: when another name of the source file `src` was put in
    /// place earlier in this batch, makes `at` a link to that destination
    /// file (built at a temporary name and renamed over the target) instead
    /// of a second copy. `None` when there is no such name or linking is not
    /// possible (another file system below the destination, the link limit,
    /// a file system without hard links): the caller copies.
    pub(super) fn link_to_known(
        &mut self,
        at: &At,
        src: &Meta,
        dst: Option<&Meta>,
    ) -> R<Option<Outcome>> {
        let Some((first, first_id)) = self.links.get(&src.id()).cloned() else {
            return Ok(None);
        };
        if first == at.rel {
            return Ok(None);
        }
        let Some(fdir) = self.dst_dir(path::parent(&first), false)? else {
            return Ok(None);
        };
        let fname = path::file_name(&first);
        // Still the file this batch put there (a later op may have replaced
        // or removed it).
        match sys::lstat_at(raw(&*fdir), fname).map_err(|e| self.derr(&first, e))? {
            Some(m) if m.ftype == FileType::Regular && m.id() == first_id => {}
            _ => return Ok(None),
        }
        if dst.is_some_and(|d| d.id() == first_id) {
            return Ok(Some(Outcome::Done)); // already that file
        }
        let temp = match sys::with_temp_name(at.name, |temp| {
            sys::link(raw(&*fdir), fname, at.dst, temp)
        }) {
            Ok((temp, ())) => temp,
            Err(e) => {
                log::debug!(
                    "mirror: cannot link {} to {}: {e}; copying it",
                    path::display(at.rel),
                    path::display(&first)
                );
                return Ok(None);
            }
        };
        let placed = self.place(at, &temp, dst);
        if !matches!(placed, Ok(true)) {
            let _ = sys::unlink(at.dst, &temp);
        }
        if placed? {
            self.report.copied += 1;
            log::debug!(
                "mirror: linked {} to {}",
                path::display(at.rel),
                path::display(&first)
            );
        }
        Ok(Some(Outcome::Done))
    }
}
