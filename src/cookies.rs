//! Reading the `Cookie:` header, for the session (server) and the language (both
//! builds). Kept apart so that neither identity nor i18n owns the other's parser.

/// Finds one cookie's value in a `Cookie:` header (the first, if it is there twice).
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    cookie_values(header, name).next()
}

/// Every value a `Cookie:` header gives one name (a planted cookie makes two).
pub fn cookie_values<'a, 'n>(header: &'a str, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    header.split(';').filter_map(move |pair| {
        let (key, value) = pair.split_once('=')?;
        (key.trim() == name).then(|| value.trim())
    })
}
