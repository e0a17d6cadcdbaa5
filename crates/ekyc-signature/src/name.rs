//! Distinguished names as RFC 4514 strings (`CN=Taro,O=Example,C=JP`): the most specific
//! RDN first, `,` between RDNs, `+` inside a multi-valued RDN, special characters escaped
//! and values that are not character strings written as `#` and the hex of their DER.

use std::fmt::Write as _;

use x509_parser::asn1_rs::{Class, Tag};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// The RFC 4514 string of a name.
pub(crate) fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name.iter_rdn().map(|rdn| rdn.iter().map(attribute).collect::<Vec<_>>().join("+")).collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn attribute(atv: &AttributeTypeAndValue<'_>) -> String {
    let oid = atv.attr_type().to_id_string();
    let short = match oid.as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => oid.as_str(),
    };
    let value = atv.attr_value();
    match text(value.header.tag(), value.data) {
        Some(s) => format!("{short}={}", escape(&s)),
        None => {
            format!("{short}=#{}", hex::encode(der(value.header.class(), value.header.is_constructed(), value.header.tag(), value.data)))
        }
    }
}

/// The text of a character-string value, or None for other types.
fn text(tag: Tag, data: &[u8]) -> Option<String> {
    match tag {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::NumericString | Tag::VisibleString => {
            String::from_utf8(data.to_vec()).ok()
        }
        // Teletex is in practice Latin-1 (or UTF-8 mislabelled); take UTF-8 when it is.
        Tag::TeletexString => Some(String::from_utf8(data.to_vec()).unwrap_or_else(|_| data.iter().map(|&b| char::from(b)).collect())),
        Tag::BmpString if data.len().is_multiple_of(2) => {
            char::decode_utf16(data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]]))).collect::<Result<String, _>>().ok()
        }
        Tag::UniversalString if data.len().is_multiple_of(4) => {
            data.chunks_exact(4).map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))).collect()
        }
        _ => None,
    }
}

/// RFC 4514 section 2.4 escaping.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02x}");
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The DER encoding of a value from its parts (tag numbers below 31 and above, any length).
fn der(class: Class, constructed: bool, tag: Tag, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 6);
    let first = ((class as u8) << 6) | if constructed { 0x20 } else { 0 };
    if tag.0 < 31 {
        out.push(first | tag.0 as u8);
    } else {
        out.push(first | 0x1f);
        let mut groups = Vec::new();
        let mut t = tag.0;
        loop {
            groups.push((t & 0x7f) as u8);
            t >>= 7;
            if t == 0 {
                break;
            }
        }
        for (i, g) in groups.iter().enumerate().rev() {
            out.push(if i == 0 { *g } else { g | 0x80 });
        }
    }
    if data.len() < 128 {
        out.push(data.len() as u8);
    } else {
        let len = data.len().to_be_bytes();
        let skip = len.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (len.len() - skip) as u8);
        out.extend_from_slice(&len[skip..]);
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_characters_rfc_4514_names() {
        assert_eq!(escape("Sato, Taro"), "Sato\\, Taro");
        assert_eq!(escape("#1 a+b;c<d>e\"f\\"), "\\#1 a\\+b\\;c\\<d\\>e\\\"f\\\\");
        assert_eq!(escape(" lead and trail "), "\\ lead and trail\\ ");
        assert_eq!(escape("a\u{0}b\nc"), "a\\00b\\0ac");
        assert_eq!(escape("日本 太郎"), "日本 太郎");
    }

    #[test]
    fn decodes_bmp_and_universal_strings_and_encodes_others_as_der() {
        assert_eq!(text(Tag::BmpString, &[0x65, 0xe5, 0x67, 0x2c]).as_deref(), Some("日本"));
        assert_eq!(text(Tag::UniversalString, &[0, 0, 0, 0x41]).as_deref(), Some("A"));
        assert_eq!(text(Tag::OctetString, b"x"), None);
        assert_eq!(der(Class::Universal, false, Tag::OctetString, b"hi"), vec![0x04, 0x02, b'h', b'i']);
        let long = vec![0u8; 200];
        assert_eq!(&der(Class::Universal, false, Tag::OctetString, &long)[..3], &[0x04, 0x81, 200]);
        assert_eq!(der(Class::ContextSpecific, true, Tag(40), &[]), vec![0xbf, 0x28, 0x00]);
    }
}
