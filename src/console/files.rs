//! The console's files, compiled in, each with its media type and ETag.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// One file of the console.
pub(crate) struct File {
    /// The name under `/console/` (`""` for the page itself).
    pub(crate) name: &'static str,
    /// Its `Content-Type`.
    pub(crate) content_type: &'static str,
    /// Its bytes.
    pub(crate) body: &'static [u8],
}

/// Every file, the page first.
pub(crate) const FILES: &[File] = &[
    File {
        name: "",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("assets/index.html"),
    },
    File {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
    File {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/api.js"),
    },
    File {
        name: "dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/dom.js"),
    },
    File {
        name: "forms.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/forms.js"),
    },
    File {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/style.css"),
    },
    File {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("assets/favicon.svg"),
    },
];

/// The file named `name` and its index in [`FILES`].
pub(crate) fn find(name: &str) -> Option<(usize, &'static File)> {
    FILES.iter().enumerate().find(|(_, f)| f.name == name)
}

/// The strong ETag of `FILES[index]`: a quoted SHA-256 prefix of its
/// bytes, computed once.
pub(crate) fn etag(index: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|file| {
                let digest = Sha256::digest(file.body);
                format!("\"{}\"", hex::encode(&digest[..12]))
            })
            .collect()
    });
    tags.get(index).map_or("\"\"", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_found_by_its_name_and_tags_differ() {
        for (index, file) in FILES.iter().enumerate() {
            let (found, _) = find(file.name).expect("found");
            assert_eq!(found, index);
            assert_eq!(etag(index).len(), 26, "{}", file.name);
        }
        let mut tags: Vec<_> = (0..FILES.len()).map(etag).collect();
        tags.sort_unstable();
        tags.dedup();
        assert_eq!(tags.len(), FILES.len());
        assert!(find("../Cargo.toml").is_none());
    }

    #[test]
    fn files_load_nothing_from_elsewhere_and_never_write_markup() {
        for file in FILES {
            let text = std::str::from_utf8(file.body).expect("utf-8");
            // The SVG's namespace name is an identifier, not a request.
            let text = text.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
            for banned in ["http://", "https://", "//fonts.", "@import", "url("] {
                assert!(!text.contains(banned), "{} holds {banned:?}", file.name);
            }
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "localStorage",
                "sessionStorage",
                "document.cookie",
            ] {
                assert!(!text.contains(sink), "{} uses {sink}", file.name);
            }
            assert!(
                !text.contains(" style=\""),
                "{} has an inline style attribute",
                file.name
            );
        }
    }
}
