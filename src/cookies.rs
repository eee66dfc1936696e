//! Reading the `Cookie:` header, for the session (server) and the language (both
//! builds). Kept apart so that neither identity nor i18n owns the other's parser.

/// Finds one cookie's value in a `Cookie:` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim())
    })
}
