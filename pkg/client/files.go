package client

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/enmanuel/unibus/pkg/api"
	"github.com/enmanuel/unibus/pkg/e2ee"
)

// Progress is told how many bytes of total have moved so far. It may be nil.
type Progress func(done, total int64)

// SendFile encrypts the file at path under a fresh key, uploads it to the
// room's blob store and sends a message carrying its name, size, blob id and
// key, with text beside it. The file is streamed twice (once to hash the
// ciphertext the request signs, once to upload it), never held in memory.
func (c *Client) SendFile(ctx context.Context, roomRef, path, text string, progress Progress) (string, error) {
	id, err := c.ResolveRoom(ctx, roomRef)
	if err != nil {
		return "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open file to send: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file: attach a file", path)
	}
	fk, err := e2ee.NewFileKey(rand.Reader)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	ctSize, err := e2ee.EncryptFile(h, f, fk)
	if err != nil {
		return "", fmt.Errorf("encrypt %s: %w", path, err)
	}
	var digest [32]byte
	h.Sum(digest[:0])
	blob, err := c.uploadBlob(ctx, id, f, fk, digest, ctSize, progress)
	if err != nil {
		return "", err
	}
	if blob.ID != hex.EncodeToString(digest[:]) {
		return "", fmt.Errorf("server stored the file as %s, not as the digest %x it was sent with", blob.ID, digest)
	}
	ref := &FileRef{Name: filepath.Base(path), Size: fi.Size(), Blob: blob.ID, Key: fk[:]}
	return c.Send(ctx, id, Message{Text: text, File: ref})
}

// uploadBlob streams the encryption of src, from its start, as the body
// of a signed upload. An upload sent to another node starts again from
// src's start: the encryption under fk is the same each time, and a blob
// stored twice is stored once (it is named by its digest).
func (c *Client) uploadBlob(ctx context.Context, room string, src io.ReadSeeker, fk e2ee.FileKey, digest [32]byte, size int64, progress Progress) (api.Blob, error) {
	var encrypting chan struct{} // closed when the last attempt's encryption has stopped reading src
	defer func() {
		if encrypting != nil {
			<-encrypting
		}
	}()
	resp, err := c.send(ctx, func(ctx context.Context, node *url.URL) (*http.Request, error) {
		if encrypting != nil {
			<-encrypting // the transport closed its body: the encryption stops
		}
		if _, err := src.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		pr, pw := io.Pipe()
		done := make(chan struct{})
		encrypting = done
		go func() {
			defer close(done)
			_, err := e2ee.EncryptFile(pw, src, fk)
			pw.CloseWithError(err)
		}()
		var body io.ReadCloser = pr
		if progress != nil {
			body = &progressReader{r: pr, total: size, fn: progress}
		}
		req, err := c.newRequest(ctx, node, http.MethodPost, "/v1/rooms/"+room+"/blobs", nil, body, digest, size)
		if err != nil {
			pr.Close()
			return nil, err
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		return req, nil
	})
	if err != nil {
		return api.Blob{}, err
	}
	defer resp.Body.Close()
	if err := checkResponse(resp); err != nil {
		return api.Blob{}, fmt.Errorf("upload file: %w", err)
	}
	var b api.Blob
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		return api.Blob{}, fmt.Errorf("decode upload answer: %w", err)
	}
	return b, nil
}

// errFound stops a history scan.
var errFound = errors.New("found")

// FindMessage returns the message with the given id from the room's history.
func (c *Client) FindMessage(ctx context.Context, roomRef, msgID string) (Received, error) {
	id, err := c.ResolveRoom(ctx, roomRef)
	if err != nil {
		return Received{}, err
	}
	var found Received
	err = c.Read(ctx, id, ReadOptions{}, func(r Received) error {
		if r.ID == msgID {
			found = r
			return errFound
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return found, nil
	}
	if err != nil {
		return Received{}, err
	}
	return Received{}, api.Errorf(api.CodeNotFound, "no message %s in room %s: see `unibus read %s --json` for ids", msgID, id, id)
}

// FetchFile downloads and decrypts the file attached to message msgID,
// writing the plaintext to dst as it streams. It returns the attachment's
// description. Nothing unauthenticated is written: a tampered or truncated
// download fails.
func (c *Client) FetchFile(ctx context.Context, roomRef, msgID string, dst io.Writer, progress Progress) (*FileRef, error) {
	m, err := c.FindMessage(ctx, roomRef, msgID)
	if err != nil {
		return nil, err
	}
	if m.Err != nil {
		return nil, fmt.Errorf("message %s cannot be read: %w", msgID, m.Err)
	}
	if m.File == nil {
		return nil, fmt.Errorf("message %s has no attached file", msgID)
	}
	if len(m.File.Key) != e2ee.KeySize {
		return nil, fmt.Errorf("message %s carries a malformed file key", msgID)
	}
	resp, err := c.send(ctx, func(ctx context.Context, node *url.URL) (*http.Request, error) {
		return c.newRequest(ctx, node, http.MethodGet, "/v1/rooms/"+m.Room+"/blobs/"+m.File.Blob, nil, http.NoBody, sha256.Sum256(nil), 0)
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := checkResponse(resp); err != nil {
		return nil, fmt.Errorf("download file: %w", err)
	}
	var body io.Reader = resp.Body
	if progress != nil {
		body = &progressReader{r: resp.Body, total: resp.ContentLength, fn: progress}
	}
	dec, err := e2ee.NewFileDecrypter(body, e2ee.FileKey(m.File.Key))
	if err != nil {
		return nil, fmt.Errorf("decrypt file: %w", err)
	}
	n, err := io.Copy(dst, dec)
	if err != nil {
		return nil, fmt.Errorf("decrypt file: %w", err)
	}
	if n != m.File.Size {
		return nil, fmt.Errorf("file decrypted to %d bytes, the message says %d", n, m.File.Size)
	}
	return m.File, nil
}

type progressReader struct {
	r     io.ReadCloser
	done  int64
	total int64
	fn    Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	p.fn(p.done, p.total)
	return n, err
}

func (p *progressReader) Close() error { return p.r.Close() }
