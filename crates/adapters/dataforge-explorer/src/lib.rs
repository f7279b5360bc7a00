//! The explorer's page, built from `web/` by build.rs and embedded, so that the served page needs
//! no network and no files beside the binary.

/// One file of the page.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    /// A validator of the bytes (their hash) as the `ETag` header takes it: weak (`W/"..."`),
    /// since the answer may be compressed and stays the same to a reader.
    pub etag: &'static str,
    pub bytes: &'static [u8],
}

const ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/explorer/assets.rs"));

/// The asset named `name` (`app.js`), if the page has it.
pub fn asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The page's HTML, answered for every explorer address (the page reads its state from the URL).
pub fn page() -> &'static Asset {
    asset("index.html").unwrap_or(&ASSETS[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_the_built_script_and_style() {
        let html = std::str::from_utf8(page().bytes).expect("utf-8");
        assert!(html.contains("/explorer/app.js") && html.contains("/explorer/app.css"));
        for name in ["app.js", "app.css"] {
            let asset = asset(name).expect("built");
            assert!(!asset.bytes.is_empty(), "{name} is empty");
            assert!(asset.etag.starts_with("W/\"") && asset.etag.len() == 20);
        }
        assert!(asset("../Cargo.toml").is_none());
    }
}
