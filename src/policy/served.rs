//! Served files, the part that is policy: how far symlinks in a served directory may lead
//! ([`Links`]), and what a refused open means to each protocol ([`Refusal`]), so that TFTP
//! and HTTP refuse the same names for the same reasons. The opening itself is
//! [`crate::io::files::open_served`]'s.

use crate::wire::tftp::ErrorCode;

/// How far symlinks in a served directory may lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Links {
    /// Every link must resolve inside the root.
    Inside,
    /// A link directly in the root may point anywhere; deeper names must stay inside. For the
    /// iPXE directory, which is looked up by base name only: Debian's `ipxe` package links
    /// `/usr/lib/ipxe/ipxe.efi` to `/boot/ipxe.efi`, and those links are the operator's.
    TopLevelTrusted,
}

/// Why a served file could not be opened.
#[derive(Debug)]
pub enum Refusal {
    /// No such file, or not a regular file (directories, devices and FIFOs are never served).
    NotFound,
    /// The name, after following symlinks, leads outside the root.
    Outside,
    /// It exists but cannot be read (permissions, I/O error), with the reason.
    Unreadable(String),
    /// Not here, and its upstream could not give it (the asset cache), with why.
    Upstream(String),
    /// Being fetched from its upstream: a TFTP client's retransmitted request gets it.
    Fetching,
}

impl Refusal {
    /// The TFTP ERROR to send, and its message.
    pub fn tftp_error(&self) -> (ErrorCode, String) {
        match self {
            Refusal::NotFound => (ErrorCode::FileNotFound, "file not found".into()),
            Refusal::Outside => (
                ErrorCode::AccessViolation,
                "outside the served directories".into(),
            ),
            Refusal::Unreadable(why) => (ErrorCode::AccessViolation, format!("cannot read: {why}")),
            Refusal::Upstream(why) => (ErrorCode::NotDefined, format!("upstream: {why}")),
            Refusal::Fetching => (ErrorCode::NotDefined, "being fetched, try again".into()),
        }
    }

    /// The HTTP status (404: a client learns nothing about what lies outside; 502 when the
    /// upstream failed), and the access log's note.
    pub fn http_status(&self) -> (u16, String) {
        match self {
            Refusal::NotFound => (404, "no such file".to_string()),
            Refusal::Outside => (
                404,
                "refused: leads outside the served directory".to_string(),
            ),
            Refusal::Unreadable(why) => (404, format!("cannot read: {why}")),
            Refusal::Upstream(why) => (502, format!("upstream: {why}")),
            Refusal::Fetching => (503, "being fetched".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_one_meaning_per_protocol() {
        assert_eq!(
            Refusal::NotFound.tftp_error(),
            (ErrorCode::FileNotFound, "file not found".to_string())
        );
        assert_eq!(Refusal::Outside.tftp_error().0, ErrorCode::AccessViolation);
        assert_eq!(
            Refusal::Unreadable("Permission denied".into()).tftp_error(),
            (
                ErrorCode::AccessViolation,
                "cannot read: Permission denied".to_string()
            )
        );
        assert_eq!(
            Refusal::NotFound.http_status(),
            (404, "no such file".into())
        );
        assert_eq!(
            Refusal::Outside.http_status(),
            (404, "refused: leads outside the served directory".into())
        );
        assert_eq!(Refusal::Unreadable("x".into()).http_status().0, 404);
    }
}
