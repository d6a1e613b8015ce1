//! Reading header values out of parsed responses and requests: the header
//! lists of [`http::Response`](super::http::Response),
//! [`Received`](super::upstream::Received) and the tests' own raw parsers
//! are `(name, value)` pairs in wire order.

#![allow(dead_code)]

/// Every value of header `name` (case-insensitive) in `headers`, in order,
/// as `T` (`str` for text values, `[u8]` for raw ones).
pub fn header_values<'a, V, T>(headers: &'a [(String, V)], name: &str) -> Vec<&'a T>
where
    V: AsRef<T>,
    T: ?Sized,
{
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
        .collect()
}

/// The first value of header `name` (case-insensitive) in `headers`.
pub fn first_header<'a, V, T>(headers: &'a [(String, V)], name: &str) -> Option<&'a T>
where
    V: AsRef<T>,
    T: ?Sized,
{
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_ref())
}
