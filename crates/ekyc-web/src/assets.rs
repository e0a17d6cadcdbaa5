//! The page's files, compiled into the binary from `web/dist/` (built by esbuild from
//! `web/src/`; see `web/README.md`). Scripts and styles are served under names carrying
//! their content's SHA-256, cached for a year; the HTML, which names them, is never cached.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// One file the page is made of.
#[derive(Debug)]
pub struct Asset {
    /// The path it is served at, e.g. `/assets/app.3f2a…c1.js`.
    pub path: String,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const INDEX: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/dist/index.html"));
const FILES: [(&str, &str, &[u8]); 2] = [
    ("app.js", "text/javascript; charset=utf-8", include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/dist/app.js"))),
    ("app.css", "text/css; charset=utf-8", include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/dist/app.css"))),
];

/// The page: `index.html` with its asset names filled in, and the assets.
#[derive(Debug)]
pub struct Page {
    pub index: String,
    pub assets: Vec<Asset>,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    let mut index = INDEX.to_string();
    let assets = FILES
        .iter()
        .map(|(name, content_type, body)| {
            let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
            let digest = hex::encode(&Sha256::digest(body)[..10]);
            let path = format!("/assets/{stem}.{digest}.{ext}");
            index = index.replace(&format!("{{{{{name}}}}}"), &path);
            Asset { path, content_type, body }
        })
        .collect();
    Page { index, assets }
});

pub fn page() -> &'static Page {
    &PAGE
}

impl Page {
    pub fn asset(&self, path: &str) -> Option<&Asset> {
        self.assets.iter().find(|a| a.path == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_its_hashed_assets_and_has_no_inline_script() {
        let page = page();
        assert!(!page.index.contains("{{"), "an asset placeholder is left: {}", page.index);
        for a in &page.assets {
            assert!(page.index.contains(&a.path), "{} is not referenced", a.path);
            let hash = a.path.rsplit('.').nth(1).expect("a hash");
            assert_eq!(hash, hex::encode(&Sha256::digest(a.body)[..10]));
        }
        // The CSP forbids inline scripts and styles; the page must not need them.
        let lower = page.index.to_ascii_lowercase();
        assert!(!lower.contains("<script>") && !lower.contains(" onclick=") && !lower.contains("<style"), "{}", page.index);
        assert!(page.asset("/assets/app.js").is_none(), "unhashed names are not served");
    }
}
