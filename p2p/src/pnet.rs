//! The private-network (PSK) layer, byte for byte libp2p-pnet's protocol (go-libp2p's `pnet`, which
//! kubo and Helia speak): each side sends a random 24-byte nonce, then XORs everything it writes
//! with XSalsa20(key, its own nonce) and everything it reads with XSalsa20(key, the peer's nonce).
//!
//! Why not `libp2p::pnet`: its cipher is the `salsa20` crate, which has only a portable backend,
//! and it hands the socket 1 KiB writes. This layer takes XSalsa20 from libsodium (SSE2/AVX2 code
//! picked at run time; 2.5× the portable one here) and writes in [`WRITE_BUFFER`] batches. The
//! PSK layer was half of a transfer's CPU (`../shared/CEILINGS.md`).

use std::io;
use std::pin::Pin;
use std::sync::Once;
use std::task::{ready, Context, Poll};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of the nonce each side sends first.
pub const NONCE_SIZE: usize = 24;
/// Bytes of a Salsa20 block: the keystream is generated a block at a time.
const BLOCK: usize = 64;
/// Bytes buffered (already encrypted) before they are written to the socket. yamux flushes after
/// each batch of frames, so this bounds a batch, not latency.
pub const WRITE_BUFFER: usize = 64 << 10;
/// Bytes asked of the socket at once when the reader above asks for less. noise reads in 8 KiB
/// pieces: a 256 MiB transfer was 32,768 `recvfrom` calls on the receiver, one per 8 KiB.
pub const READ_BUFFER: usize = 64 << 10;

/// One direction's XSalsa20 keystream, applied at any byte position. XSalsa20 is Salsa20 under
/// the subkey HSalsa20(key, nonce[..16]) with nonce[16..]: the subkey is derived once here, not
/// on every call (as `crypto_stream_xsalsa20_xor_ic` would).
struct Keystream {
    subkey: [u8; 32],
    nonce: [u8; 8],
    /// The next whole block to generate.
    block: u64,
    /// The rest of the last block generated for a partial tail, used first.
    spare: [u8; BLOCK],
    spare_at: usize,
}

impl Keystream {
    fn new(key: [u8; 32], nonce: [u8; NONCE_SIZE]) -> Self {
        static INIT: Once = Once::new();
        // SAFETY: sodium_init has no preconditions and is safe to call more than once; it picks
        // the SIMD implementations for this CPU.
        INIT.call_once(|| {
            if unsafe { libsodium_sys::sodium_init() } < 0 {
                // only fails when the OS has no random source, which libp2p needs anyway
                tracing::error!("libsodium failed to initialise");
            }
        });
        let mut subkey = [0u8; 32];
        // SAFETY: out is 32 bytes, in 16, k 32 (the sizes HSalsa20 reads and writes); a null c
        // selects the standard constants
        unsafe {
            libsodium_sys::crypto_core_hsalsa20(
                subkey.as_mut_ptr(),
                nonce.as_ptr(),
                key.as_ptr(),
                std::ptr::null(),
            );
        }
        let mut tail = [0u8; 8];
        tail.copy_from_slice(&nonce[16..]);
        Keystream {
            subkey,
            nonce: tail,
            block: 0,
            spare: [0; BLOCK],
            spare_at: BLOCK,
        }
    }

    /// XORs `data` with the next `data.len()` bytes of keystream.
    fn apply(&mut self, data: &mut [u8]) {
        let spare = (BLOCK - self.spare_at).min(data.len());
        let (head, rest) = data.split_at_mut(spare);
        for (byte, key) in head.iter_mut().zip(&self.spare[self.spare_at..]) {
            *byte ^= key;
        }
        self.spare_at += spare;
        let whole = rest.len() / BLOCK * BLOCK;
        let (body, tail) = rest.split_at_mut(whole);
        self.xor_blocks(body);
        if !tail.is_empty() {
            let mut block = [0u8; BLOCK];
            self.xor_blocks(&mut block);
            for (byte, key) in tail.iter_mut().zip(&block) {
                *byte ^= key;
            }
            self.spare = block;
            self.spare_at = tail.len();
        }
    }

    /// XORs whole blocks of keystream into `data` (a multiple of [`BLOCK`] bytes) in place.
    fn xor_blocks(&mut self, data: &mut [u8]) {
        if data.is_empty() {
            return;
        }
        let ptr = data.as_mut_ptr();
        // SAFETY: `ptr` is valid for `data.len()` bytes for reading and writing; libsodium's
        // stream XOR may work in place (c == m); key and nonce are the sizes it reads.
        unsafe {
            libsodium_sys::crypto_stream_salsa20_xor_ic(
                ptr,
                ptr,
                data.len() as u64,
                self.nonce.as_ptr(),
                self.block,
                self.subkey.as_ptr(),
            );
        }
        self.block += (data.len() / BLOCK) as u64;
    }
}

/// A socket after the PSK handshake: reads are decrypted and batched, writes encrypted and
/// batched.
pub struct PskStream<S> {
    inner: S,
    read: Keystream,
    write: Keystream,
    /// Encrypted bytes not yet written to `inner`, from `written` on.
    out: Vec<u8>,
    written: usize,
    /// Decrypted bytes read from `inner`: `input[taken..filled]` are not handed out yet. Empty
    /// until the first small read (a reader that asks for large pieces needs none).
    input: Box<[u8]>,
    taken: usize,
    filled: usize,
}

impl<S> std::fmt::Debug for PskStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PskStream")
            .field("buffered", &(self.out.len() - self.written))
            .finish()
    }
}

/// Exchanges nonces over `socket` and returns it wrapped in the PSK layer.
pub async fn handshake<S>(mut socket: S, key: [u8; 32]) -> io::Result<PskStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut local = [0u8; NONCE_SIZE];
    rand::fill(&mut local);
    socket.write_all(&local).await?;
    socket.flush().await?;
    let mut remote = [0u8; NONCE_SIZE];
    socket.read_exact(&mut remote).await?;
    Ok(PskStream::new(socket, key, remote, local))
}

impl<S> PskStream<S> {
    /// `inner` after the nonces were exchanged: read with the peer's nonce, write with ours.
    fn new(inner: S, key: [u8; 32], remote: [u8; NONCE_SIZE], local: [u8; NONCE_SIZE]) -> Self {
        PskStream {
            inner,
            read: Keystream::new(key, remote),
            write: Keystream::new(key, local),
            out: Vec::with_capacity(WRITE_BUFFER),
            written: 0,
            input: Box::default(),
            taken: 0,
            filled: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> PskStream<S> {
    /// Writes out every buffered byte.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PskStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.taken == this.filled {
            // nothing buffered: a large read goes straight to the socket, a small one fills the
            // buffer first (one system call for many of the reader's pieces)
            if buf.len() >= READ_BUFFER {
                let n = ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                this.read.apply(&mut buf[..n]);
                return Poll::Ready(Ok(n));
            }
            if this.input.is_empty() {
                this.input = vec![0; READ_BUFFER].into_boxed_slice();
            }
            let n = ready!(Pin::new(&mut this.inner).poll_read(cx, &mut this.input))?;
            this.read.apply(&mut this.input[..n]);
            (this.taken, this.filled) = (0, n);
        }
        let n = buf.len().min(this.filled - this.taken);
        buf[..n].copy_from_slice(&this.input[this.taken..this.taken + n]);
        this.taken += n;
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PskStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() >= WRITE_BUFFER {
            ready!(this.poll_drain(cx))?;
        }
        let n = buf.len().min(WRITE_BUFFER - this.out.len());
        let start = this.out.len();
        this.out.extend_from_slice(&buf[..n]);
        this.write.apply(&mut this.out[start..]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::pnet::{PnetConfig, PreSharedKey};
    use rand::Rng;
    use salsa20::cipher::{KeyIvInit, StreamCipher};
    use tokio_util::compat::TokioAsyncReadCompatExt;

    /// The keystream equals the `salsa20` crate's XSalsa20 (libp2p-pnet's cipher) whatever the
    /// pieces it is applied in.
    #[test]
    fn keystream_matches_the_portable_xsalsa20_at_every_split() {
        let mut rng = rand::rng();
        for _ in 0..50 {
            let key: [u8; 32] = rng.random();
            let nonce: [u8; NONCE_SIZE] = rng.random();
            let len = rng.random_range(0..20_000);
            let mut ours = vec![0u8; len];
            rng.fill(&mut ours[..]);
            let mut theirs = ours.clone();
            salsa20::XSalsa20::new(&key.into(), &nonce.into()).apply_keystream(&mut theirs);
            let mut stream = Keystream::new(key, nonce);
            let mut at = 0;
            while at < len {
                let piece = rng.random_range(0..=200.min(len - at)).max(1);
                stream.apply(&mut ours[at..at + piece]);
                at += piece;
            }
            assert_eq!(ours, theirs, "len {len}");
        }
    }

    /// A reader under the PSK layer that records the size of every read asked of it.
    struct Recording {
        data: futures::io::Cursor<Vec<u8>>,
        asked: Vec<usize>,
    }

    impl AsyncRead for Recording {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            self.asked.push(buf.len());
            Pin::new(&mut self.data).poll_read(cx, buf)
        }
    }

    /// Small reads (noise asks for 8 KiB at a time) are served from one socket read of
    /// [`READ_BUFFER`] bytes, large ones go to the socket directly, and the bytes are decrypted
    /// in order either way, whatever the mix of sizes.
    #[tokio::test]
    async fn small_reads_share_one_socket_read() {
        let key = [7u8; 32];
        let nonce = [9u8; NONCE_SIZE];
        let plain: Vec<u8> = (0..4 * READ_BUFFER + 1234)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut wire = plain.clone();
        salsa20::XSalsa20::new(&key.into(), &nonce.into()).apply_keystream(&mut wire);
        let recording = Recording {
            data: futures::io::Cursor::new(wire),
            asked: Vec::new(),
        };
        let mut s = PskStream::new(recording, key, nonce, nonce);
        let mut got = Vec::new();
        // a buffer's worth in 8 KiB reads, then one large read, then odd sizes to the end
        for size in std::iter::repeat_n(8 << 10, READ_BUFFER / (8 << 10))
            .chain([2 * READ_BUFFER])
            .chain(std::iter::repeat(7_001))
        {
            let mut buf = vec![0u8; size];
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got.len(), plain.len());
        assert!(got == plain, "decrypted bytes differ");
        let asked = &s.inner.asked;
        assert_eq!(
            asked[0], READ_BUFFER,
            "the first 8 KiB read fills the buffer"
        );
        assert_eq!(
            asked[1],
            2 * READ_BUFFER,
            "a large read goes to the socket itself"
        );
        // 8 KiB reads: one socket read per READ_BUFFER, not per piece
        assert!(asked.len() <= 8, "{} socket reads: {asked:?}", asked.len());
        // an empty read is not end of stream, and takes nothing from the socket
        let before = s.inner.asked.len();
        assert_eq!(s.read(&mut []).await.unwrap(), 0);
        assert_eq!(s.inner.asked.len(), before);
    }

    /// This layer and libp2p-pnet talk to each other over a real TCP connection, both ways, in
    /// writes of every size.
    #[tokio::test]
    async fn interoperates_with_libp2p_pnet() {
        let key = [42u8; 32];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let theirs = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut s = PnetConfig::new(PreSharedKey::new(key))
                .handshake(socket.compat())
                .await
                .unwrap();
            // echo until the peer closes
            let mut buf = vec![0u8; 7_000];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
                s.flush().await.unwrap();
            }
        });
        let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut ours = handshake(socket.compat(), key).await.unwrap();
        let mut sent = Vec::new();
        for len in [1usize, 63, 64, 65, 1000, 70_000, 200_000] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            ours.write_all(&data).await.unwrap();
            ours.flush().await.unwrap();
            let mut back = vec![0u8; len];
            ours.read_exact(&mut back).await.unwrap();
            assert_eq!(back, data, "echo of {len} bytes");
            sent.extend(data);
        }
        ours.close().await.unwrap();
        theirs.await.unwrap();
    }
}
