//! Which parts of its memory a waiter gives back: `/proc/self/maps` lines parsed
//! without allocating, and the ranges left once the stack and thread areas are kept.
//!
//! A waiter is a fork of the containerizer's process: its private anonymous memory
//! (heap, arenas, other threads' stacks) is the containerizer's, shared copy-on-write.
//! Every page the containerizer writes afterwards is copied, and the old copy stays
//! pinned by the waiter for as long as the task runs; so the waiter drops those pages
//! (`MADV_DONTNEED`) once it no longer needs them, keeping only windows around its
//! stack pointer and its thread pointer (thread control block and static TLS).

/// One line of `/proc/self/maps`, as far as the waiter cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapping {
    /// First address.
    pub start: usize,
    /// One past the last address.
    pub end: usize,
    /// Private, writable and anonymous (no file; `[heap]`, `[stack]` and
    /// `[anon:<name>]` count as anonymous, other `[...]` specials such as `[vdso]` do
    /// not): memory that may be a copy-on-write share of the containerizer's.
    pub private_anonymous: bool,
    /// Backed by a file (an inode other than 0): an anonymous mapping right after one
    /// is that object's `.bss`.
    pub file_backed: bool,
}

/// Parses `start-end perms offset dev inode [path]`; `None` if the line is not that.
pub(crate) fn parse_line(line: &[u8]) -> Option<Mapping> {
    let mut fields = line.split(|byte| *byte == b' ').filter(|field| !field.is_empty());
    let range = fields.next()?;
    let dash = range.iter().position(|byte| *byte == b'-')?;
    let start = parse_hex(&range[..dash])?;
    let end = parse_hex(&range[dash + 1..])?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let _device = fields.next()?;
    let inode = fields.next()?;
    let path = fields.next().unwrap_or(b"");
    let writable_private = perms.len() == 4 && perms[1] == b'w' && perms[3] == b'p';
    let anonymous = inode == b"0"
        && (path.is_empty()
            || path == b"[heap]"
            || path == b"[stack]"
            || (path.starts_with(b"[anon:") && path.ends_with(b"]")));
    let file_backed = inode != b"0";
    (start < end).then_some(Mapping {
        start,
        end,
        private_anonymous: writable_private && anonymous,
        file_backed,
    })
}

/// Parses a lowercase or uppercase hexadecimal number (no prefix).
fn parse_hex(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 2 * std::mem::size_of::<usize>() {
        return None;
    }
    digits.iter().try_fold(0usize, |value, digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            b'A'..=b'F' => digit - b'A' + 10,
            _ => return None,
        };
        Some((value << 4) | usize::from(nibble))
    })
}

/// `[start, end)` without the `keep` windows (which may overlap), as at most three
/// ranges (empty ones are `(x, x)`).
pub(crate) fn without(start: usize, end: usize, keep: [(usize, usize); 2]) -> [(usize, usize); 3] {
    let [mut first, mut second] = keep;
    if first.0 > second.0 {
        std::mem::swap(&mut first, &mut second);
    }
    if second.0 < first.1 {
        first.1 = first.1.max(second.1);
        second = (first.1, first.1);
    }
    let clamp = |address: usize| address.clamp(start, end);
    [(start, clamp(first.0)), (clamp(first.1), clamp(second.0).max(clamp(first.1))), (clamp(second.1), end)]
}

/// The window kept around `address`: `below` bytes under it and `above` bytes over it,
/// rounded out to `page` boundaries (a power of two).
pub(crate) fn window(address: usize, below: usize, above: usize, page: usize) -> (usize, usize) {
    let low = address.saturating_sub(below) & !(page - 1);
    let high = address.saturating_add(above).saturating_add(page - 1) & !(page - 1);
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_proc_self_maps_parse() {
        let heap = parse_line(b"563681a3a000-563681a5b000 rw-p 00000000 00:00 0          [heap]").unwrap();
        assert_eq!(
            heap,
            Mapping {
                start: 0x563681a3a000,
                end: 0x563681a5b000,
                private_anonymous: true,
                file_backed: false
            }
        );
        let library =
            parse_line(b"7fb66f25f000-7fb66f261000 rw-p 001d3000 fe:00 326279   /usr/lib/libc.so.6").unwrap();
        assert!(library.file_backed && !library.private_anonymous);
        let anonymous = parse_line(b"7fb66dc88000-7fb66f08c000 rw-p 00000000 00:00 0 ").unwrap();
        assert!(anonymous.private_anonymous);
        let named = parse_line(b"7f00-7f10 rw-p 00000000 00:00 0   [anon:tokio]").unwrap();
        assert!(named.private_anonymous);
        for kept in [
            &b"7fb66f25f000-7fb66f261000 rw-p 001d3000 fe:00 326279   /usr/lib/x86_64-linux-gnu/libc.so.6"[..],
            b"7fb66f299000-7fb66f29d000 r--p 00000000 00:00 0          [vvar]",
            b"7fb66f294000-7fb66f295000 ---p 00000000 00:00 0 ",
            b"7f00-7f10 rw-s 00000000 00:01 1234   /dev/zero (deleted)",
            b"7f00-7f10 r--p 00000000 00:00 0 ",
        ] {
            assert!(!parse_line(kept).unwrap().private_anonymous, "{}", String::from_utf8_lossy(kept));
        }
        assert_eq!(parse_line(b""), None);
        assert_eq!(parse_line(b"zz-10 rw-p 0 00:00 0"), None);
        assert_eq!(parse_line(b"10-20"), None);
        assert_eq!(parse_line(b"20-10 rw-p 0 00:00 0"), None);
        assert_eq!(parse_line(b"11112222333344445-20 rw-p 0 00:00 0"), None);
    }

    #[test]
    fn kept_windows_are_cut_out() {
        // Both windows inside.
        assert_eq!(without(0, 100, [(60, 70), (10, 20)]), [(0, 10), (20, 60), (70, 100)]);
        // One window covers the start, the other is elsewhere.
        assert_eq!(without(50, 100, [(0, 60), (200, 300)]), [(50, 50), (60, 100), (100, 100)]);
        // Neither touches the mapping.
        assert_eq!(without(50, 100, [(0, 10), (200, 300)]), [(50, 50), (50, 100), (100, 100)]);
        // Overlapping windows.
        assert_eq!(without(0, 100, [(10, 30), (20, 40)]), [(0, 10), (40, 40), (40, 100)]);
        assert_eq!(without(0, 100, [(20, 40), (10, 30)]), [(0, 10), (40, 40), (40, 100)]);
        assert_eq!(without(0, 100, [(10, 50), (20, 30)]), [(0, 10), (50, 50), (50, 100)]);
        // One covers everything.
        assert_eq!(without(50, 100, [(0, 200), (300, 400)]), [(50, 50), (100, 100), (100, 100)]);
        let total = |ranges: [(usize, usize); 3]| ranges.iter().map(|(a, b)| b - a).sum::<usize>();
        assert_eq!(total(without(0, 100, [(60, 70), (10, 20)])), 80);
    }

    #[test]
    fn windows_round_out_to_pages() {
        assert_eq!(window(0x10_0123, 0x1000, 0x10, 0x1000), (0xf_f000, 0x10_1000));
        assert_eq!(window(0x10, 0x1000, 0x10, 0x1000), (0, 0x1000));
        assert_eq!(window(usize::MAX - 5, 0, 100, 0x1000).1, usize::MAX & !0xfff);
    }
}
