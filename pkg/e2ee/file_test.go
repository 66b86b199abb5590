package e2ee_test

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"io"
	"math"
	"runtime"
	"strconv"
	"testing"
	"testing/iotest"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/enmanuel/unibus/pkg/e2ee"
)

const (
	chunk   = e2ee.FileChunkSize
	ctChunk = chunk + 16
	magicN  = len(e2ee.FileMagic)
)

func encryptFile(tb testing.TB, pt []byte, key e2ee.FileKey) []byte {
	tb.Helper()
	var buf bytes.Buffer
	n, err := e2ee.EncryptFile(&buf, bytes.NewReader(pt), key)
	if err != nil {
		tb.Fatalf("EncryptFile: %v", err)
	}
	if n != int64(buf.Len()) {
		tb.Fatalf("EncryptFile returned %d, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func decryptFile(ct []byte, key e2ee.FileKey) ([]byte, error) {
	d, err := e2ee.NewFileDecrypter(bytes.NewReader(ct), key)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(d)
}

func TestFileRoundTrip(t *testing.T) {
	key := e2ee.FileKey(stream32("file key"))
	for _, size := range []int{0, 1, 16, chunk - 1, chunk, chunk + 1, 2 * chunk, 2*chunk + 1, 150 << 10} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			pt := streamBytes("file plaintext", size)
			ct := encryptFile(t, pt, key)
			if int64(len(ct)) != e2ee.EncryptedFileSize(int64(size)) {
				t.Fatalf("size %d, EncryptedFileSize %d", len(ct), e2ee.EncryptedFileSize(int64(size)))
			}
			if string(ct[:magicN]) != "unibus-file-v1\n" {
				t.Fatalf("magic %q", ct[:magicN])
			}
			if !bytes.Equal(encryptFile(t, pt, key), ct) {
				t.Fatal("encryption is not deterministic")
			}
			got, err := decryptFile(ct, key)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("decrypt: %v (len %d, want %d)", err, len(got), len(pt))
			}
			d, err := e2ee.NewFileDecrypter(iotest.OneByteReader(bytes.NewReader(ct)), key)
			if err != nil {
				t.Fatal(err)
			}
			if err := iotest.TestReader(d, pt); err != nil {
				t.Fatal(err)
			}
			d, _ = e2ee.NewFileDecrypter(bytes.NewReader(ct), key)
			var out bytes.Buffer
			if n, err := io.Copy(&out, d); err != nil || n != int64(size) || !bytes.Equal(out.Bytes(), pt) {
				t.Fatalf("WriteTo: %d, %v", n, err)
			}
			var slow bytes.Buffer
			if _, err := e2ee.EncryptFile(&slow, iotest.HalfReader(bytes.NewReader(pt)), key); err != nil || !bytes.Equal(slow.Bytes(), ct) {
				t.Fatalf("short reads change the output: %v", err)
			}
		})
	}
}

// TestFileLayout decrypts a stream with independent code per
// docs/envelope.md.
func TestFileLayout(t *testing.T) {
	key := e2ee.FileKey(stream32("file key"))
	pt := streamBytes("layout", chunk+5)
	ct := encryptFile(t, pt, key)
	k, _ := hkdf.Key(sha256.New, key[:], nil, "unibus-file-v1", 32)
	aead, _ := chacha20poly1305.New(k)
	nonce := make([]byte, 12)
	c0, err := aead.Open(nil, nonce, ct[magicN:magicN+ctChunk], nil)
	if err != nil || !bytes.Equal(c0, pt[:chunk]) {
		t.Fatalf("chunk 0: %v", err)
	}
	nonce[10], nonce[11] = 1, 1
	c1, err := aead.Open(nil, nonce, ct[magicN+ctChunk:], nil)
	if err != nil || !bytes.Equal(c1, pt[chunk:]) {
		t.Fatalf("chunk 1: %v", err)
	}
}

func TestFileReject(t *testing.T) {
	key := e2ee.FileKey(stream32("file key"))
	pt := streamBytes("file plaintext", 150<<10) // chunks of 64, 64 and 22 KiB
	ct := encryptFile(t, pt, key)
	c1, c2 := magicN+ctChunk, magicN+2*ctChunk // chunk starts
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name string
		ct   []byte
		key  e2ee.FileKey
		want error
		good int // plaintext bytes that may be returned before the error
	}{
		{"empty", nil, key, e2ee.ErrDecrypt, 0},
		{"truncated magic", ct[:5], key, e2ee.ErrDecrypt, 0},
		{"magic only", ct[:magicN], key, e2ee.ErrDecrypt, 0},
		{"truncated first chunk", ct[:magicN+15], key, e2ee.ErrDecrypt, 0},
		{"truncated mid chunk", ct[:c1-1], key, e2ee.ErrDecrypt, 0},
		{"truncated at chunk boundary", ct[:c1], key, e2ee.ErrDecrypt, 0},
		{"final chunk dropped", ct[:c2], key, e2ee.ErrDecrypt, chunk},
		{"final chunk tag short", ct[:c2+15], key, e2ee.ErrDecrypt, 2 * chunk},
		{"last byte dropped", ct[:len(ct)-1], key, e2ee.ErrDecrypt, 2 * chunk},
		{"middle chunk dropped", cat(ct[:c1], ct[c2:]), key, e2ee.ErrDecrypt, chunk},
		{"chunks reordered", cat(ct[:magicN], ct[c1:c2], ct[magicN:c1], ct[c2:]), key, e2ee.ErrDecrypt, 0},
		{"chunk duplicated", cat(ct[:c2], ct[c1:]), key, e2ee.ErrDecrypt, 2 * chunk},
		{"extended by a byte", cat(ct, []byte{0}), key, e2ee.ErrDecrypt, 2 * chunk},
		{"extended by a chunk", cat(ct, ct[c2:]), key, e2ee.ErrDecrypt, 2 * chunk},
		{"tampered first chunk", flipBit(ct, (magicN+100)*8), key, e2ee.ErrDecrypt, 0},
		{"tampered middle chunk", flipBit(ct, (c1+7)*8+5), key, e2ee.ErrDecrypt, chunk},
		{"tampered final tag", flipBit(ct, len(ct)*8-1), key, e2ee.ErrDecrypt, 2 * chunk},
		{"wrong key", ct, e2ee.FileKey(stream32("other key")), e2ee.ErrDecrypt, 0},
		{"garbage", []byte("definitely not a unibus file"), key, e2ee.ErrMalformed, 0},
		{"short garbage", []byte("x"), key, e2ee.ErrMalformed, 0},
		{"version 2", cat([]byte("unibus-file-v2\n"), ct[magicN:]), key, e2ee.ErrVersion, 0},
		{"bad magic end", cat([]byte("unibus-file-v1\r"), ct[magicN:]), key, e2ee.ErrVersion, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decryptFile(tt.ct, tt.key)
			wantErr(t, err, tt.want)
			if len(got) > tt.good || !bytes.Equal(got, pt[:len(got)]) {
				t.Fatalf("returned %d plaintext bytes before the error, want at most %d authentic ones", len(got), tt.good)
			}
			// The error is sticky.
			d, err := e2ee.NewFileDecrypter(bytes.NewReader(tt.ct), tt.key)
			if err != nil {
				return
			}
			io.Copy(io.Discard, d)
			if _, err := d.Read(make([]byte, 1)); !errors.Is(err, tt.want) {
				t.Fatalf("second read: %v", err)
			}
		})
	}
	t.Run("every truncation of a small stream", func(t *testing.T) {
		small := encryptFile(t, []byte("hello"), key)
		for n := range len(small) {
			_, err := decryptFile(small[:n], key)
			wantErr(t, err, e2ee.ErrDecrypt)
		}
	})
	t.Run("empty final chunk after data", func(t *testing.T) {
		// Forge a stream whose last chunk is empty: only a key holder can,
		// but the format allows one encoding of each plaintext only.
		k, _ := hkdf.Key(sha256.New, key[:], nil, "unibus-file-v1", 32)
		aead, _ := chacha20poly1305.New(k)
		nonce := make([]byte, 12)
		b := []byte(e2ee.FileMagic)
		b = aead.Seal(b, nonce, pt[:chunk], nil)
		nonce[10], nonce[11] = 1, 1
		b = aead.Seal(b, nonce, nil, nil)
		got, err := decryptFile(b, key)
		wantErr(t, err, e2ee.ErrDecrypt)
		if len(got) > chunk {
			t.Fatal("returned more than the first chunk")
		}
	})
}

func TestFileIOErrors(t *testing.T) {
	key := e2ee.FileKey(stream32("file key"))
	boom := errors.New("boom")
	pt := streamBytes("io", chunk+10)
	ct := encryptFile(t, pt, key)
	t.Run("read error while encrypting", func(t *testing.T) {
		_, err := e2ee.EncryptFile(io.Discard, io.MultiReader(bytes.NewReader(pt), iotest.ErrReader(boom)), key)
		wantErr(t, err, boom)
		_, err = e2ee.EncryptFile(io.Discard, io.MultiReader(bytes.NewReader(pt[:chunk]), iotest.ErrReader(boom)), key)
		wantErr(t, err, boom)
	})
	t.Run("write error", func(t *testing.T) {
		for _, limit := range []int{0, magicN, magicN + 1} {
			n, err := e2ee.EncryptFile(&failWriter{left: limit, err: boom}, bytes.NewReader(pt), key)
			wantErr(t, err, boom)
			if n > int64(limit) {
				t.Fatalf("reported %d bytes written, limit %d", n, limit)
			}
		}
	})
	t.Run("read error while decrypting", func(t *testing.T) {
		for _, cut := range []int{3, magicN + 10, magicN + ctChunk, magicN + ctChunk + 1} {
			r := io.MultiReader(bytes.NewReader(ct[:cut]), iotest.ErrReader(boom))
			d, err := e2ee.NewFileDecrypter(r, key)
			if err == nil {
				_, err = io.ReadAll(d)
			}
			wantErr(t, err, boom)
		}
	})
}

type failWriter struct {
	left int
	err  error
}

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, w.err
	}
	w.left -= len(p)
	return len(p), nil
}

func TestEncryptedFileSize(t *testing.T) {
	tests := []struct{ in, want int64 }{
		{0, 15 + 16},
		{1, 15 + 1 + 16},
		{chunk, 15 + chunk + 16},
		{chunk + 1, 15 + chunk + 1 + 32},
		{150 << 10, 15 + 150<<10 + 48},
		{-1, -1},
		{math.MaxInt64, -1},
	}
	for _, tt := range tests {
		t.Run(strconv.FormatInt(tt.in, 10), func(t *testing.T) {
			if got := e2ee.EncryptedFileSize(tt.in); got != tt.want {
				t.Fatalf("EncryptedFileSize(%d) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

// TestFileMemoryBounded encrypts and decrypts 32 MiB and checks that the
// memory allocated stays near one chunk.
func TestFileMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	key := e2ee.FileKey(stream32("big"))
	const size = 32 << 20
	pr, pw := io.Pipe()
	go func() {
		_, err := e2ee.EncryptFile(pw, io.LimitReader(zeroReader{}, size), key)
		pw.CloseWithError(err)
	}()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	d, err := e2ee.NewFileDecrypter(pr, key)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, d)
	if err != nil || n != size {
		t.Fatalf("copied %d: %v", n, err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Fatalf("allocated %d bytes for a %d-byte file", alloc, size)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }
