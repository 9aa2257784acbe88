//! Media types and document names as Converse takes them
//! (https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ImageBlock.html,
//! https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_DocumentBlock.html).

pub(super) fn image_format(mime: &str) -> Option<&'static str> {
    match mime {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

pub(super) fn guess_mime(url: &str) -> &'static str {
    match url.rsplit('.').next().map(str::to_ascii_lowercase).as_deref() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        _ => "image/jpeg",
    }
}

pub(super) fn document_format(mime: &str) -> Option<&'static str> {
    Some(match mime {
        "application/pdf" => "pdf",
        "text/csv" => "csv",
        "application/msword" => "doc",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "text/html" => "html",
        "text/plain" => "txt",
        "text/markdown" => "md",
        _ => return None,
    })
}

/// A document name Bedrock accepts (letters, digits, single spaces, `-`,
/// `(`, `)`, `[`, `]`), unique in the request: the file's name without its
/// extension, or `document N`.
pub(super) fn document_name(filename: Option<&str>, n: usize) -> String {
    let stem = filename.map(|f| f.rsplit_once('.').map_or(f, |(s, _)| s)).unwrap_or("");
    let mut name = String::with_capacity(stem.len());
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') { c } else { ' ' };
        if !(c == ' ' && (name.is_empty() || name.ends_with(' '))) {
            name.push(c);
        }
    }
    let name = name.trim_end();
    if name.is_empty() { format!("document {n}") } else { format!("{name} ({n})") }
}
