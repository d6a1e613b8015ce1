//! The raw HTTP/1.1 wire, for tests that read responses byte for byte:
//! finding the end of the head, de-chunking strictly, and splitting a
//! complete response into status, headers and body (panicking on anything
//! malformed).

#![allow(dead_code)]

/// Where `needle` first starts in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The body of a chunked message; panics if a chunk is malformed.
pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..line_end]).expect("chunk size is ASCII");
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).expect("chunk size is hex");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A complete response split up.
pub struct Parsed {
    /// Status code.
    pub status: u16,
    /// Header names lowercased, values trimmed, in wire order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, de-chunked if need be.
    pub body: Vec<u8>,
}

/// Splits `raw` (a whole `HTTP/1.1` response, read to EOF). Panics unless
/// the head is ASCII, the status line says `HTTP/1.1`, every header line
/// has a colon, and a `Content-Length` matches the body.
pub fn parse(raw: &[u8]) -> Parsed {
    let head_end = find(raw, b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..head_end]).expect("response head is ASCII");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, Vec<u8>)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line has a colon");
            (
                name.trim().to_ascii_lowercase(),
                value.trim().as_bytes().to_vec(),
            )
        })
        .collect();
    let rest = &raw[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case(b"chunked"));
    let body = if chunked {
        dechunk(rest)
    } else if let Some((_, len)) = headers.iter().find(|(n, _)| n == "content-length") {
        let len: usize = std::str::from_utf8(len)
            .ok()
            .and_then(|len| len.parse().ok())
            .expect("content-length is a number");
        assert_eq!(rest.len(), len, "body length vs content-length");
        rest.to_vec()
    } else {
        rest.to_vec()
    };
    Parsed {
        status,
        headers,
        body,
    }
}
