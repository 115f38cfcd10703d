//! A read cursor that knows its position and only offers fallible reads.

use super::DecodeError;

/// Reads from a byte slice; every read is checked and reports the offset on failure.
#[derive(Debug, Clone)]
pub struct ReadCursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ReadCursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Current offset from the start of the buffer.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The unread rest of the buffer.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    fn short(&self, field: &'static str, need: usize) -> DecodeError {
        DecodeError::new(
            self.pos,
            field,
            format!("{need} byte(s)"),
            format!("{} byte(s) left", self.remaining()),
        )
    }

    pub fn read_slice(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| self.short(field, n))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.short(field, n))?;
        self.pos = end;
        Ok(s)
    }

    pub fn skip(&mut self, n: usize, field: &'static str) -> Result<(), DecodeError> {
        self.read_slice(n, field).map(|_| ())
    }

    pub fn read_array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let s = self.read_slice(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub fn read_u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.read_array::<1>(field)?[0])
    }

    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub fn read_u16_be(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.read_array(field)?))
    }

    pub fn read_u16_le(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.read_array(field)?))
    }

    pub fn read_u24_be(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let [a, b, c] = self.read_array(field)?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    pub fn read_u32_le(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.read_array(field)?))
    }

    pub fn read_u32_be(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.read_array(field)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_report_offset_when_short() {
        let mut c = ReadCursor::new(&[1, 2, 3]);
        assert_eq!(c.read_u16_be("a").unwrap(), 0x0102);
        let e = c.read_u16_be("b").unwrap_err();
        assert_eq!(e.offset, 2);
        assert_eq!(e.field, "b");
        assert_eq!(c.read_u8("c").unwrap(), 3);
        assert_eq!(c.remaining(), 0);
    }
}
