//! Encapsulated sub-options: PXE's vendor options in DHCP option 43 (the PXE specification,
//! section 2.5) and iPXE's in option 175. Both are code-length-value lists ended by 255, with
//! 0 as padding. [`emit`] writes a list, [`find`] reads one sub-option; pure, never panics.

/// PXE sub-option 6: discovery control (bit 3, value 8: boot the `file` in the offer at once).
pub const DISCOVERY_CONTROL: u8 = 6;
/// Bit values of [`DISCOVERY_CONTROL`]: use the boot file given, no boot-server discovery.
pub const BOOT_FILE_AT_ONCE: u8 = 8;
/// PXE sub-option 9: boot menu (type u16, description length, description).
pub const BOOT_MENU: u8 = 9;
/// PXE sub-option 10: menu prompt (timeout, prompt text).
pub const MENU_PROMPT: u8 = 10;
/// PXE sub-option 71: boot item (type u16, layer u16), echoed by the boot server.
pub const BOOT_ITEM: u8 = 71;
/// iPXE sub-option 176 (in option 175): `no-pxedhcp`, do not wait for ProxyDHCP offers.
pub const IPXE_NO_PXEDHCP: u8 = 176;

const PAD: u8 = 0;
const END: u8 = 255;

/// A sub-option list with its end marker (option 43, as PXE requires). A value longer than
/// 255 bytes cannot be encoded and is cut to 255 (none of netbootd's values comes near).
pub fn emit(sub_options: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = emit_without_end(sub_options);
    out.push(END);
    out
}

/// A sub-option list without the end marker: option 175 as iPXE reads it (the length of the
/// option already bounds the list).
pub fn emit_without_end(sub_options: &[(u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (code, value) in sub_options {
        let value = &value[..value.len().min(255)];
        out.push(*code);
        out.push(value.len() as u8);
        out.extend_from_slice(value);
    }
    out
}

/// The value of sub-option `wanted` in `data`, if present and whole.
pub fn find(data: &[u8], wanted: u8) -> Option<&[u8]> {
    let mut at = 0;
    while let Some(&code) = data.get(at) {
        match code {
            PAD => {
                at += 1;
                continue;
            }
            END => return None,
            _ => {}
        }
        let len = usize::from(*data.get(at + 1)?);
        let value = data.get(at + 2..at + 2 + len)?;
        if code == wanted {
            return Some(value);
        }
        at += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emitted_lists_read_back_and_end_with_255() {
        let list = emit(&[
            (DISCOVERY_CONTROL, &[BOOT_FILE_AT_ONCE]),
            (BOOT_ITEM, &[0x80, 0, 0, 0]),
        ]);
        assert_eq!(list, [6, 1, 8, 71, 4, 0x80, 0, 0, 0, 255]);
        assert_eq!(find(&list, DISCOVERY_CONTROL), Some(&[8][..]));
        assert_eq!(find(&list, BOOT_ITEM), Some(&[0x80, 0, 0, 0][..]));
        assert_eq!(find(&list, BOOT_MENU), None);
        assert_eq!(emit(&[]), [255]);
        assert_eq!(emit_without_end(&[(IPXE_NO_PXEDHCP, &[1])]), [176, 1, 1]);
    }

    #[test]
    fn padding_truncation_and_junk_after_the_end_are_handled() {
        assert_eq!(find(&[0, 0, 71, 1, 9, 255], BOOT_ITEM), Some(&[9][..]));
        assert_eq!(find(&[71, 5, 1, 2], BOOT_ITEM), None, "cut short");
        assert_eq!(find(&[71], BOOT_ITEM), None, "no length");
        assert_eq!(find(&[255, 71, 1, 1], BOOT_ITEM), None, "after the end");
        assert_eq!(find(&[], BOOT_ITEM), None);
        let long = [7u8; 300];
        assert_eq!(emit(&[(1, &long)]).len(), 2 + 255 + 1);
    }

    #[test]
    fn never_panics_on_any_input() {
        let mut next = crate::testing::xorshift(43);
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| ((next() % 8) as u8).wrapping_mul(37))
                .collect();
            for wanted in [0, 6, 71, 74, 255] {
                let _ = find(&data, wanted);
            }
        }
    }
}
