//! README's configuration table lists every setting the service reads, with its real default.

use coupon_runtime::settings::KEYS;

#[test]
fn readme_documents_every_setting_with_its_default() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README.md");
    for key in KEYS {
        let default =
            if key.default.is_empty() { "(empty)".to_owned() } else { format!("`{}`", key.default) };
        let row = format!("| `{}` | {} |", key.name, default);
        assert!(readme.contains(&row), "README.md has no row starting {row:?}");
    }
}
