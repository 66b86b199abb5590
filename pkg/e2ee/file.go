package e2ee

import (
	"bytes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// File stream format constants. See docs/envelope.md.
const (
	// FileMagic starts every encrypted file stream; it names the format
	// and its version.
	FileMagic = "unibus-file-v1\n"
	// FileInfo is the HKDF info string that derives the stream key from a
	// file key.
	FileInfo = "unibus-file-v1"
	// FileChunkSize is the plaintext size of every chunk of a file stream
	// but the last, which holds 1 to FileChunkSize bytes (0 only when the
	// whole file is empty).
	FileChunkSize = 64 << 10
)

const (
	fileMagicStem = "unibus-file-v"
	fileCTChunk   = FileChunkSize + Overhead
)

var (
	errFileMagic     = fmt.Errorf("%w: not a unibus file stream", ErrMalformed)
	errFileVersion   = fmt.Errorf("%w: file stream version is not 1", ErrVersion)
	errFileTruncated = fmt.Errorf("%w: file stream truncated", ErrDecrypt)
	errFileChunk     = fmt.Errorf("%w: file chunk does not authenticate", ErrDecrypt)
	errFileEmptyLast = fmt.Errorf("%w: empty final chunk after data", ErrDecrypt)
)

// FileKey is the key of one encrypted file. Use a fresh random key for
// every file and never encrypt two different plaintexts under one key:
// encryption is deterministic.
type FileKey [KeySize]byte

// NewFileKey returns a file key read from rand (crypto/rand.Reader if nil).
func NewFileKey(rand io.Reader) (FileKey, error) {
	var k FileKey
	if _, err := io.ReadFull(randReader(rand), k[:]); err != nil {
		return FileKey{}, fmt.Errorf("e2ee: read random file key: %w", err)
	}
	return k, nil
}

func fileAEAD(key *FileKey) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, key[:], nil, FileInfo, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("e2ee: derive file stream key: %w", err)
	}
	aead, err := chacha20poly1305.New(k)
	if err != nil {
		return nil, fmt.Errorf("e2ee: %w", err)
	}
	return aead, nil
}

// setFileNonce writes the 11-byte big-endian counter and the last-chunk
// flag into n.
func setFileNonce(n *[chacha20poly1305.NonceSize]byte, counter uint64, last bool) {
	n[0], n[1], n[2] = 0, 0, 0
	binary.BigEndian.PutUint64(n[3:11], counter)
	n[11] = 0
	if last {
		n[11] = 1
	}
}

// EncryptedFileSize returns the size of the encrypted stream of a
// plaintextSize-byte file, or -1 if plaintextSize is negative or too large.
func EncryptedFileSize(plaintextSize int64) int64 {
	if plaintextSize < 0 {
		return -1
	}
	chunks := plaintextSize / FileChunkSize
	if plaintextSize%FileChunkSize != 0 || plaintextSize == 0 {
		chunks++
	}
	size := int64(len(FileMagic)) + plaintextSize + chunks*Overhead
	if size < plaintextSize {
		return -1
	}
	return size
}

// EncryptFile encrypts src under key and writes the stream to dst: the
// FileMagic header, then ChaCha20-Poly1305 chunks of FileChunkSize
// plaintext bytes, the last flagged in its nonce. It uses one chunk of
// memory whatever the file size and returns the number of bytes written,
// [EncryptedFileSize] of the plaintext size on success. The output depends
// only on key and the plaintext.
func EncryptFile(dst io.Writer, src io.Reader, key FileKey) (ciphertextBytes int64, err error) {
	aead, err := fileAEAD(&key)
	if err != nil {
		return 0, err
	}
	n, err := io.WriteString(dst, FileMagic)
	ciphertextBytes += int64(n)
	if err != nil {
		return ciphertextBytes, err
	}
	// buf holds one ciphertext chunk, then one byte of lookahead.
	buf := make([]byte, fileCTChunk+1)
	var nonce [chacha20poly1305.NonceSize]byte
	have := 0
	for counter := uint64(0); ; counter++ {
		n, err := io.ReadFull(src, buf[have:FileChunkSize])
		n += have
		last := false
		switch err {
		case nil:
			// A full chunk: it is the last if no byte follows.
			switch _, perr := io.ReadFull(src, buf[fileCTChunk:]); perr {
			case nil:
			case io.EOF:
				last = true
			default:
				return ciphertextBytes, fmt.Errorf("e2ee: read file: %w", perr)
			}
		case io.EOF, io.ErrUnexpectedEOF:
			last = true
		default:
			return ciphertextBytes, fmt.Errorf("e2ee: read file: %w", err)
		}
		setFileNonce(&nonce, counter, last)
		ct := aead.Seal(buf[:0], nonce[:], buf[:n], nil)
		w, err := dst.Write(ct)
		ciphertextBytes += int64(w)
		if err != nil {
			return ciphertextBytes, err
		}
		if last {
			return ciphertextBytes, nil
		}
		buf[0] = buf[fileCTChunk]
		have = 1
	}
}

// NewFileDecrypter reads the stream header from src and returns a reader of
// the plaintext of the encrypted file stream in src. It fails with
// [ErrMalformed] if src is not a file stream, [ErrVersion] for another
// format version, and [ErrDecrypt] if the header is truncated.
//
// The reader authenticates each chunk before returning any of its bytes,
// so it never returns unauthenticated plaintext. Tampering, truncation,
// reordering or extension of the stream, or the wrong key, make a Read fail
// with [ErrDecrypt]; the reader returns [io.EOF] only after the final chunk
// has been authenticated and the end of src reached. Errors are sticky. The
// reader also implements [io.WriterTo]. Like any reader, it is not for
// concurrent use.
func NewFileDecrypter(src io.Reader, key FileKey) (io.Reader, error) {
	aead, err := fileAEAD(&key)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, fileCTChunk+1)
	magic := buf[:len(FileMagic)]
	n, err := io.ReadFull(src, magic)
	if !bytes.Equal(magic[:n], []byte(FileMagic[:n])) {
		if n >= len(fileMagicStem) && string(magic[:len(fileMagicStem)]) == fileMagicStem {
			return nil, errFileVersion
		}
		return nil, errFileMagic
	}
	switch err {
	case nil:
	case io.EOF, io.ErrUnexpectedEOF:
		return nil, errFileTruncated
	default:
		return nil, fmt.Errorf("e2ee: read file: %w", err)
	}
	return &fileDecrypter{src: src, aead: aead, buf: buf}, nil
}

type fileDecrypter struct {
	src     io.Reader
	aead    cipher.AEAD
	buf     []byte // one ciphertext chunk, then one byte of lookahead
	pt      []byte // authenticated plaintext not yet returned, within buf
	counter uint64
	carry   bool  // the lookahead byte starts the next chunk
	done    bool  // the final chunk was authenticated
	err     error // sticky error
	nonce   [chacha20poly1305.NonceSize]byte
}

func (d *fileDecrypter) Read(p []byte) (int, error) {
	for len(d.pt) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		if d.done {
			return 0, io.EOF
		}
		d.err = d.next()
	}
	n := copy(p, d.pt)
	d.pt = d.pt[n:]
	return n, nil
}

// WriteTo writes the remaining plaintext to w.
func (d *fileDecrypter) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(d.pt) > 0 {
			n, err := w.Write(d.pt)
			total += int64(n)
			d.pt = d.pt[n:]
			if err != nil {
				return total, err
			}
			continue
		}
		if d.err != nil {
			return total, d.err
		}
		if d.done {
			return total, nil
		}
		d.err = d.next()
	}
}

// next reads, authenticates and decrypts the next chunk into d.pt.
func (d *fileDecrypter) next() error {
	have := 0
	if d.carry {
		d.buf[0] = d.buf[fileCTChunk]
		have = 1
		d.carry = false
	}
	n, err := io.ReadFull(d.src, d.buf[have:fileCTChunk])
	n += have
	last := false
	switch err {
	case nil:
		switch _, perr := io.ReadFull(d.src, d.buf[fileCTChunk:]); perr {
		case nil:
			d.carry = true
		case io.EOF:
			last = true
		default:
			return fmt.Errorf("e2ee: read file: %w", perr)
		}
	case io.EOF, io.ErrUnexpectedEOF:
		last = true
	default:
		return fmt.Errorf("e2ee: read file: %w", err)
	}
	if n < Overhead {
		return errFileTruncated
	}
	if last && n == Overhead && d.counter > 0 {
		return errFileEmptyLast
	}
	setFileNonce(&d.nonce, d.counter, last)
	pt, err := d.aead.Open(d.buf[:0], d.nonce[:], d.buf[:n], nil)
	if err != nil {
		return errFileChunk
	}
	d.counter++
	d.done = last
	d.pt = pt
	return nil
}

var _ io.WriterTo = (*fileDecrypter)(nil)
