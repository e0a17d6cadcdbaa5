//! The development photos and their labels (`labels.csv`: `file,identity,faces,notes`).
//!
//! The folder is `$EKYC_FACES_DIR`, else `../shared/faces` beside the checkout. Tests fail
//! with a clear message when it is missing rather than passing vacuously.

use std::path::PathBuf;

/// How many faces a photo holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceCount {
    Exactly(usize),
    AtLeast(usize),
}

impl FaceCount {
    pub fn admits(self, n: usize) -> bool {
        match self {
            FaceCount::Exactly(k) => n == k,
            FaceCount::AtLeast(k) => n >= k,
        }
    }
}

/// One row of `labels.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Photo {
    pub file: String,
    /// The person shown, for single-person photos.
    pub identity: Option<String>,
    pub faces: FaceCount,
    pub notes: String,
}

impl Photo {
    /// A single face, entirely inside the image.
    pub fn is_whole_single_face(&self) -> bool {
        self.faces == FaceCount::Exactly(1) && !self.notes.contains("cut by") && !self.file.contains("partial")
    }

    pub fn path(&self) -> PathBuf {
        faces_dir().join(&self.file)
    }

    /// The photo's encoded bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let p = self.path();
        std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    }
}

/// The folder of development photos.
pub fn faces_dir() -> PathBuf {
    let dir = std::env::var_os("EKYC_FACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/faces"));
    assert!(
        dir.join("labels.csv").is_file(),
        "development photos not found at {} (set EKYC_FACES_DIR to the folder holding labels.csv)",
        dir.display()
    );
    dir
}

/// All labelled photos.
pub fn photos() -> Vec<Photo> {
    let path = faces_dir().join("labels.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines().skip(1).filter(|l| !l.trim().is_empty()).map(parse_row).collect()
}

/// The labelled photos of the folder `dir` (its `labels.csv`).
pub fn photos_in(dir: &std::path::Path) -> std::io::Result<Vec<Photo>> {
    let text = std::fs::read_to_string(dir.join("labels.csv"))?;
    Ok(text.lines().skip(1).filter(|l| !l.trim().is_empty()).map(parse_row).collect())
}

/// Which photos are the same capture: the name of the photo a copy was made from (`notes`
/// saying "same photo as FILE"), else the file's stem without a resolution suffix (`_720p`).
/// Copies at other resolutions or formats share a key; distinct captures do not.
pub fn capture_key(photo: &Photo, all: &[Photo]) -> String {
    let stem = |file: &str| {
        let s = file.rsplit_once('.').map_or(file, |(s, _)| s);
        match s.rsplit_once('_') {
            Some((head, tail)) if tail.len() > 1 && tail.ends_with('p') && tail[..tail.len() - 1].bytes().all(|b| b.is_ascii_digit()) => {
                head.to_string()
            }
            _ => s.to_string(),
        }
    };
    if let Some(rest) = photo.notes.split("same photo as ").nth(1) {
        let source = rest.split_whitespace().next().unwrap_or("");
        if source != photo.file && all.iter().any(|p| p.file == source) {
            return stem(source);
        }
    }
    stem(&photo.file)
}

/// The photo named `file`.
pub fn photo(file: &str) -> Photo {
    photos().into_iter().find(|p| p.file == file).unwrap_or_else(|| panic!("{file} is not in labels.csv"))
}

fn parse_row(line: &str) -> Photo {
    let cols: Vec<&str> = line.splitn(4, ',').collect();
    let count = cols.get(2).copied().unwrap_or("1").trim();
    let faces = match count.strip_suffix('+') {
        Some(n) => FaceCount::AtLeast(n.parse().unwrap_or_else(|_| panic!("bad face count in `{line}`"))),
        None => FaceCount::Exactly(count.parse().unwrap_or_else(|_| panic!("bad face count in `{line}`"))),
    };
    let identity = cols.get(1).map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::to_string);
    Photo { file: cols[0].trim().to_string(), identity, faces, notes: cols.get(3).copied().unwrap_or("").trim().to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows() {
        let p = parse_row("multi_obama_biden.jpg,,2+,biden (left), obama (right)");
        assert_eq!(p.faces, FaceCount::AtLeast(2));
        assert_eq!(p.identity, None);
        assert_eq!(p.notes, "biden (left), obama (right)");
        let q = parse_row("obama_partial_1.jpg,obama,1,face cut by the right image border");
        assert!(!q.is_whole_single_face());
        assert!(FaceCount::AtLeast(2).admits(3) && !FaceCount::Exactly(2).admits(3));
    }

    #[test]
    fn copies_share_a_capture_key() {
        let all = [
            parse_row("obama_2.jpg,obama,1,"),
            parse_row("obama_5_1080p.jpg,obama,1,same photo as obama_5_240p/480p/720p at another resolution"),
            parse_row("obama_5_240p.jpg,obama,1,tiny face"),
            parse_row("obama_7_rgba32.png,obama,1,same photo as obama_2.jpg saved as 32-bit RGBA PNG"),
            parse_row("obama_6_small.jpg,obama,1,320x240"),
        ];
        let keys: Vec<String> = all.iter().map(|p| capture_key(p, &all)).collect();
        assert_eq!(keys, ["obama_2", "obama_5", "obama_5", "obama_2", "obama_6_small"]);
    }
}
