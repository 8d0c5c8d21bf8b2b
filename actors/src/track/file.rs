//! `track_file`: the number in a file, read as keepalived 2.2.7 reads it (C's `strtol`
//! with base 0: leading blanks, a sign, `0x` hex or `0` octal, digits up to the first
//! other character; no digits is 0; a missing or empty file is 0).

use ha_config::model::TrackFile;
use std::io::Write;
use std::path::Path;

/// The file's value, or `None` when it is out of keepalived's range (then the reading
/// is ignored, as keepalived ignores it).
pub fn parse_value(text: &[u8]) -> Option<i64> {
    let mut i = 0;
    while i < text.len() && matches!(text[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        i += 1;
    }
    let mut negative = false;
    if let Some(&c) = text.get(i) {
        if c == b'+' || c == b'-' {
            negative = c == b'-';
            i += 1;
        }
    }
    let (radix, start) = match (text.get(i), text.get(i + 1), text.get(i + 2)) {
        (Some(b'0'), Some(b'x' | b'X'), Some(d)) if d.is_ascii_hexdigit() => (16, i + 2),
        (Some(b'0'), _, _) => (8, i),
        _ => (10, i),
    };
    let mut value: i64 = 0;
    for &c in &text[start.min(text.len())..] {
        let Some(d) = (c as char).to_digit(radix) else {
            break;
        };
        value = value.checked_mul(i64::from(radix))?.checked_add(i64::from(d))?;
    }
    let value = if negative { -value } else { value };
    // keepalived's bounds: i32's range and one above.
    (i64::from(i32::MIN)..=i64::from(i32::MAX) + 1)
        .contains(&value)
        .then_some(value)
}

/// Reads the file's value now (0 if it cannot be read), as keepalived: opened without
/// blocking (a FIFO does not hold the reader), at most 127 bytes read.
pub fn read_value(path: &Path) -> Option<i64> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    else {
        return Some(0);
    };
    let mut buf = [0u8; 127];
    match f.read(&mut buf) {
        Ok(n) => parse_value(&buf[..n]),
        Err(_) => Some(0),
    }
}

/// The path to watch: the file's own, links followed (a change to a link's target comes
/// as an event in the target's directory).
pub fn watched_path(file: &str) -> std::path::PathBuf {
    std::fs::canonicalize(file).unwrap_or_else(|_| std::path::PathBuf::from(file))
}

/// `init_file` at start: writes the initial value unless the file exists (or always, with
/// `overwrite`, if it is a regular file). Once per file and process, as keepalived writes
/// it when it starts and not when it reloads: a tracker restarted by a reconfiguration
/// does not overwrite the live value.
pub fn initialise(def: &TrackFile) -> std::io::Result<()> {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    if def.init.is_none() {
        return Ok(());
    }
    if let Ok(mut done) = DONE.lock() {
        if done.contains(&def.file) {
            return Ok(());
        }
        done.push(def.file.clone());
    }
    write_initial(def)
}

fn write_initial(def: &TrackFile) -> std::io::Result<()> {
    let Some(init) = def.init else {
        return Ok(());
    };
    let path = Path::new(&def.file);
    match std::fs::metadata(path) {
        Ok(_) if !init.overwrite => return Ok(()),
        Ok(m) if !m.is_file() => {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file",
                def.file
            )))
        }
        _ => {}
    }
    let mut f = std::fs::File::create(path)?;
    writeln!(f, "{}", init.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_like_strtol() {
        assert_eq!(parse_value(b"42\n"), Some(42));
        assert_eq!(parse_value(b"  -17 apples"), Some(-17));
        assert_eq!(parse_value(b"+5"), Some(5));
        assert_eq!(parse_value(b"0x1F"), Some(31));
        assert_eq!(parse_value(b"010"), Some(8), "octal");
        assert_eq!(parse_value(b"09"), Some(0), "octal stops at 9");
        assert_eq!(parse_value(b"0x"), Some(0), "`0` then `x`");
        assert_eq!(parse_value(b""), Some(0));
        assert_eq!(parse_value(b"down"), Some(0), "no digits: 0");
        assert_eq!(
            parse_value(b"2147483648"),
            Some(2_147_483_648),
            "one above i32::MAX"
        );
        assert_eq!(parse_value(b"2147483649"), None, "out of range: ignored");
        assert_eq!(parse_value(b"-2147483649"), None);
        assert_eq!(parse_value(b"99999999999999999999999"), None, "overflow");
    }

    #[test]
    fn init_file_creates_or_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("v");
        let mut def = TrackFile::new("t");
        def.file = path.display().to_string();
        def.init = Some(ha_config::model::FileInit {
            value: 7,
            overwrite: false,
        });
        initialise(&def).expect("create");
        assert_eq!(read_value(&path), Some(7));
        std::fs::write(&path, "3\n").expect("write");
        write_initial(&def).expect("exists: kept");
        assert_eq!(read_value(&path), Some(3));
        def.init = Some(ha_config::model::FileInit {
            value: -2,
            overwrite: true,
        });
        write_initial(&def).expect("overwrite");
        assert_eq!(read_value(&path), Some(-2));
        std::fs::write(&path, "4\n").expect("write");
        initialise(&def).expect("once per process");
        assert_eq!(
            read_value(&path),
            Some(4),
            "a restarted tracker does not overwrite"
        );
        assert_eq!(read_value(&dir.path().join("missing")), Some(0));
    }
}
