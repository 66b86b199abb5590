package e2ee_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/enmanuel/unibus/pkg/e2ee"
)

var update = flag.Bool("update", false, "rewrite testdata/envelope_vectors.json")

const vectorsPath = "testdata/envelope_vectors.json"

// vectorFile is the layout of testdata/envelope_vectors.json. All byte
// strings are lowercase hex.
type vectorFile struct {
	Comment   []string       `json:"comment"`
	Envelope  []envVector    `json:"envelope"`
	SealedKey []sealedVector `json:"sealed_key"`
	File      []fileVector   `json:"file"`
}

// envVector is one envelope vector. Valid vectors (empty Error) carry the
// inputs to Seal: the sender's Ed25519 seed, the header fields, the nonce
// that rand yields, the room key (empty for cleartext) and the plaintext.
// Every vector carries the envelope bytes and the receiver's inputs; the
// receiver runs Parse, Verify(VerifyKey), Open(OpenRoom, OpenEpoch,
// OpenKey) and expects Plaintext, or Error from the first step that fails.
type envVector struct {
	Name       string `json:"name"`
	SenderSeed string `json:"sender_seed,omitempty"`
	Cleartext  bool   `json:"cleartext,omitempty"`
	Room       string `json:"room,omitempty"`
	Epoch      uint64 `json:"epoch,omitempty"`
	ID         string `json:"id,omitempty"`
	Time       int64  `json:"time,omitempty,string"`
	Nonce      string `json:"nonce,omitempty"`
	RoomKey    string `json:"room_key,omitempty"`
	Plaintext  string `json:"plaintext,omitempty"`
	Envelope   string `json:"envelope"`
	VerifyKey  string `json:"verify_key"`
	OpenRoom   string `json:"open_room"`
	OpenEpoch  uint64 `json:"open_epoch"`
	OpenKey    string `json:"open_key"`
	Error      string `json:"error"`
}

// sealedVector is one sealed room key vector. Valid vectors carry the
// sealing inputs (sealer's X25519 private key, recipient's X25519 public
// key, nonce). Every vector is opened with OpenerPriv, SealerPub and the
// context (Room, Epoch, RecipientUser) and expects RoomKey or Error.
type sealedVector struct {
	Name          string `json:"name"`
	SealerPriv    string `json:"sealer_priv,omitempty"`
	RecipientPub  string `json:"recipient_pub,omitempty"`
	Nonce         string `json:"nonce,omitempty"`
	Sealed        string `json:"sealed"`
	OpenerPriv    string `json:"opener_priv"`
	SealerPub     string `json:"sealer_pub"`
	Room          string `json:"room"`
	Epoch         uint64 `json:"epoch"`
	RecipientUser string `json:"recipient_user"`
	RoomKey       string `json:"room_key,omitempty"`
	Error         string `json:"error"`
}

// fileVector is one file stream vector. A valid vector's plaintext is
// given as hex, or for a large one as PlaintextSeed and PlaintextSize (the
// first PlaintextSize bytes of the SHA-256 counter stream of the seed), and
// its ciphertext as hex or by size and SHA-256. A negative vector applies
// Mutation to the ciphertext of the valid vector Base and decrypts the
// result (or, without Mutation, the ciphertext itself) with Key, expecting
// Error.
type fileVector struct {
	Name             string    `json:"name"`
	Key              string    `json:"key"`
	Plaintext        string    `json:"plaintext,omitempty"`
	PlaintextSeed    string    `json:"plaintext_seed,omitempty"`
	PlaintextSize    int64     `json:"plaintext_size,omitempty"`
	PlaintextSHA256  string    `json:"plaintext_sha256,omitempty"`
	Base             string    `json:"base,omitempty"`
	Mutation         *mutation `json:"mutation,omitempty"`
	Ciphertext       string    `json:"ciphertext,omitempty"`
	CiphertextSize   int64     `json:"ciphertext_size"`
	CiphertextSHA256 string    `json:"ciphertext_sha256"`
	Error            string    `json:"error"`
}

// mutation changes a ciphertext: "truncate" keeps its first Offset bytes;
// "flip" flips bit Bit (0 = least significant) of byte Offset; "swap"
// swaps the Length bytes at Offset with the Length bytes at Offset2;
// "append" appends Data (hex).
type mutation struct {
	Op      string `json:"op"`
	Offset  int    `json:"offset,omitempty"`
	Offset2 int    `json:"offset2,omitempty"`
	Length  int    `json:"length,omitempty"`
	Bit     int    `json:"bit,omitempty"`
	Data    string `json:"data,omitempty"`
}

func (m *mutation) apply(b []byte) []byte {
	c := bytes.Clone(b)
	if m == nil {
		return c
	}
	switch m.Op {
	case "truncate":
		return c[:m.Offset]
	case "flip":
		c[m.Offset] ^= 1 << m.Bit
	case "swap":
		copy(c[m.Offset:], b[m.Offset2:m.Offset2+m.Length])
		copy(c[m.Offset2:], b[m.Offset:m.Offset+m.Length])
	case "append":
		return append(c, unhex(m.Data)...)
	default:
		panic("unknown mutation " + m.Op)
	}
	return c
}

var vectorComment = []string{
	"unibus e2ee test vectors; the formats are specified in docs/envelope.md.",
	"All byte strings are lowercase hex. Errors name the Go sentinel errors of pkg/e2ee.",
	"Generated deterministically by `go test ./pkg/e2ee -run TestVectors -update`.",
	"Keys, ids and nonces are the first bytes of the SHA-256 counter stream of a label:",
	"stream(label) = SHA-256(label || uint64be(0)) || SHA-256(label || uint64be(1)) || ...",
	"Envelope: receiver runs parse, verify(verify_key), open(open_room, open_epoch, open_key; empty = none)",
	"and expects plaintext or the first error. Sealed key: open(sealed, context {room, epoch, recipient_user},",
	"opener_priv, sealer_pub). File: decrypt with key; negative vectors mutate the ciphertext of base.",
}

func hx(b []byte) string { return hex.EncodeToString(b) }

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func sha(b []byte) string { s := sha256.Sum256(b); return hx(s[:]) }

// generateVectors builds the vector file from fixed seeds.
func generateVectors(tb testing.TB) *vectorFile {
	tb.Helper()
	vf := &vectorFile{Comment: vectorComment}
	vf.Envelope = genEnvelopeVectors(tb)
	vf.SealedKey = genSealedVectors(tb)
	vf.File = genFileVectors(tb)
	return vf
}

func genEnvelopeVectors(tb testing.TB) []envVector {
	tb.Helper()
	alice, mallory := signer("alice"), signer("mallory")
	aliceSeed := stream32("alice")
	type in struct {
		name      string
		cleartext bool
		room      string
		epoch     uint64
		plaintext []byte
	}
	ins := []in{
		{"encrypted empty", false, "general", 1, nil},
		{"encrypted text", false, "team-42_x", 3, []byte("hello, unibus")},
		{"encrypted 300 bytes", false, "general", 7, streamBytes("vector plaintext", 300)},
		{"encrypted max room id", false, strings.Repeat("Az09_-", 10) + "abcd", 1 << 40, []byte("max")},
		{"cleartext empty", true, "lobby", 1, nil},
		{"cleartext text", true, "lobby", 2, []byte("public notice")},
	}
	var vs []envVector
	byName := map[string]envVector{}
	for i, x := range ins {
		var key *e2ee.RoomKey
		keyHex := ""
		if !x.cleartext {
			k := e2ee.RoomKey(stream32("room key " + x.room))
			key, keyHex = &k, hx(k[:])
		}
		h := e2ee.Header{
			Cleartext: x.cleartext, Room: x.room, Epoch: x.epoch,
			ID:   [16]byte(streamBytes("message id "+x.name, 16)),
			Time: 1_750_000_000_000_000_000 + int64(i),
		}
		b, err := e2ee.Seal(h, key, x.plaintext, alice, newStream("nonce "+x.name))
		if err != nil {
			tb.Fatalf("%s: %v", x.name, err)
		}
		e, _ := e2ee.Parse(b)
		v := envVector{
			Name: x.name, SenderSeed: hx(aliceSeed[:]), Cleartext: x.cleartext,
			Room: x.room, Epoch: x.epoch, ID: hx(h.ID[:]), Time: h.Time, Nonce: hx(e.Nonce[:]),
			RoomKey: keyHex, Plaintext: hx(x.plaintext), Envelope: hx(b),
			VerifyKey: hx(pubOf(alice)), OpenRoom: x.room, OpenEpoch: x.epoch, OpenKey: keyHex,
		}
		vs = append(vs, v)
		byName[v.Name] = v
	}
	base := byName["encrypted text"]
	b := unhex(base.Envelope)
	payloadAt := 3 + len(base.Room) + 8 + 32 + 16 + 8 + 24 + 4
	neg := func(name string, env []byte, f func(v *envVector), errName string) {
		v := envVector{
			Name: name, Envelope: hx(env), VerifyKey: base.VerifyKey,
			OpenRoom: base.OpenRoom, OpenEpoch: base.OpenEpoch, OpenKey: base.OpenKey, Error: errName,
		}
		if f != nil {
			f(&v)
		}
		vs = append(vs, v)
	}
	tampered := flipBit(b, payloadAt*8)
	otherKey := stream32("room key other")
	neg("tampered", tampered, nil, "ErrSignature")
	neg("tampered and re-signed by the sender", resign(tampered, alice), nil, "ErrDecrypt")
	neg("truncated", b[:len(b)-1], nil, "ErrMalformed")
	neg("trailing byte", append(bytes.Clone(b), 0), nil, "ErrMalformed")
	neg("wrong key", b, func(v *envVector) { v.OpenKey = hx(otherKey[:]) }, "ErrDecrypt")
	neg("wrong sender key", b, func(v *envVector) { v.VerifyKey = hx(pubOf(mallory)) }, "ErrSignature")
	neg("forged sender", resign(b, mallory), nil, "ErrSignature")
	neg("wrong epoch", b, func(v *envVector) { v.OpenEpoch = base.Epoch + 1 }, "ErrWrongEpoch")
	neg("wrong room", b, func(v *envVector) { v.OpenRoom = "general" }, "ErrWrongRoom")
	neg("unknown version", resign(append([]byte{2}, b[1:]...), alice), nil, "ErrVersion")
	neg("unknown flag", resign(append([]byte{1, 2}, b[2:]...), alice), nil, "ErrMalformed")
	zeroEpoch := bytes.Clone(b)
	copy(zeroEpoch[3+len(base.Room):], make([]byte, 8))
	neg("zero epoch", resign(zeroEpoch, alice), func(v *envVector) { v.OpenEpoch = 0 }, "ErrMalformed")
	badRoom := bytes.Clone(b)
	badRoom[3] = '.'
	neg("bad room id", resign(badRoom, alice), func(v *envVector) { v.OpenRoom = "." + base.Room[1:] }, "ErrMalformed")
	clear := byName["cleartext text"]
	neg("cleartext in encrypted room", unhex(clear.Envelope), func(v *envVector) {
		v.OpenRoom, v.OpenEpoch, v.OpenKey = clear.Room, clear.Epoch, hx(otherKey[:])
	}, "ErrDecrypt")
	return vs
}

func genSealedVectors(tb testing.TB) []sealedVector {
	tb.Helper()
	alice, bob, carol := newMember("alice"), newMember("bob"), newMember("carol")
	var vs []sealedVector
	seal := func(name string, from, to member, room string, epoch uint64) sealedVector {
		key := stream32("sealed room key " + name)
		c := e2ee.SealedKeyContext{Room: room, Epoch: epoch, Recipient: to.user}
		s, err := e2ee.SealRoomKey(key, c, from.xpriv, to.xpub, newStream("sealed nonce "+name))
		if err != nil {
			tb.Fatalf("%s: %v", name, err)
		}
		v := sealedVector{
			Name: name, SealerPriv: hx(from.xpriv[:]), RecipientPub: hx(to.xpub[:]), Nonce: hx(s[1:25]),
			Sealed: hx(s), OpenerPriv: hx(to.xpriv[:]), SealerPub: hx(from.xpub[:]),
			Room: room, Epoch: epoch, RecipientUser: hx(to.user[:]), RoomKey: hx(key[:]),
		}
		vs = append(vs, v)
		return v
	}
	base := seal("alice to bob", alice, bob, "general", 1)
	seal("bob to alice", bob, alice, "team-42_x", 9)
	neg := func(name string, f func(v *sealedVector), errName string) {
		v := base
		v.Name, v.SealerPriv, v.RecipientPub, v.Nonce, v.RoomKey, v.Error = name, "", "", "", "", errName
		f(&v)
		vs = append(vs, v)
	}
	sealed := unhex(base.Sealed)
	neg("tampered", func(v *sealedVector) { v.Sealed = hx(flipBit(sealed, 30*8)) }, "ErrDecrypt")
	neg("wrong recipient", func(v *sealedVector) { v.OpenerPriv, v.RecipientUser = hx(carol.xpriv[:]), hx(carol.user[:]) }, "ErrDecrypt")
	neg("wrong recipient user", func(v *sealedVector) { v.RecipientUser = hx(carol.user[:]) }, "ErrDecrypt")
	neg("wrong sealer", func(v *sealedVector) { v.SealerPub = hx(carol.xpub[:]) }, "ErrDecrypt")
	neg("wrong epoch", func(v *sealedVector) { v.Epoch = 2 }, "ErrDecrypt")
	neg("wrong room", func(v *sealedVector) { v.Room = "general2" }, "ErrDecrypt")
	neg("truncated", func(v *sealedVector) { v.Sealed = hx(sealed[:len(sealed)-1]) }, "ErrMalformed")
	neg("unknown version", func(v *sealedVector) { v.Sealed = hx(append([]byte{2}, sealed[1:]...)) }, "ErrVersion")
	neg("low-order sealer key", func(v *sealedVector) { v.SealerPub = hx(make([]byte, 32)) }, "ErrBadKey")
	return vs
}

func genFileVectors(tb testing.TB) []fileVector {
	tb.Helper()
	var vs []fileVector
	small := func(name string, pt []byte) {
		key := stream32("file key " + name)
		ct := encryptFile(tb, pt, key)
		vs = append(vs, fileVector{
			Name: name, Key: hx(key[:]), Plaintext: hx(pt), PlaintextSize: int64(len(pt)), PlaintextSHA256: sha(pt),
			Ciphertext: hx(ct), CiphertextSize: int64(len(ct)), CiphertextSHA256: sha(ct),
		})
	}
	small("empty", nil)
	small("hello", []byte("hello, file\n"))
	const seed, size = "file vector 150 KiB", 150 << 10
	pt := streamBytes(seed, size)
	key := stream32("file key 150 KiB")
	ct := encryptFile(tb, pt, key)
	base := fileVector{
		Name: "150 KiB", Key: hx(key[:]), PlaintextSeed: seed, PlaintextSize: size, PlaintextSHA256: sha(pt),
		CiphertextSize: int64(len(ct)), CiphertextSHA256: sha(ct),
	}
	vs = append(vs, base)
	neg := func(name string, m *mutation, key string) {
		mct := m.apply(ct)
		vs = append(vs, fileVector{
			Name: name, Key: key, Base: base.Name, Mutation: m,
			CiphertextSize: int64(len(mct)), CiphertextSHA256: sha(mct), Error: "ErrDecrypt",
		})
	}
	other := stream32("file key other")
	neg("truncated", &mutation{Op: "truncate", Offset: len(ct) - 1}, base.Key)
	neg("truncated at chunk boundary", &mutation{Op: "truncate", Offset: magicN + 2*ctChunk}, base.Key)
	neg("tampered chunk", &mutation{Op: "flip", Offset: magicN + ctChunk + 1000, Bit: 3}, base.Key)
	neg("reordered chunks", &mutation{Op: "swap", Offset: magicN, Offset2: magicN + ctChunk, Length: ctChunk}, base.Key)
	neg("extended", &mutation{Op: "append", Data: "00"}, base.Key)
	neg("wrong key", nil, hx(other[:]))
	return vs
}

func encodeVectors(tb testing.TB, vf *vectorFile) []byte {
	tb.Helper()
	b, err := json.MarshalIndent(vf, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	return append(b, '\n')
}

func loadVectors(tb testing.TB) *vectorFile {
	tb.Helper()
	b, err := os.ReadFile(vectorsPath)
	if err != nil {
		tb.Fatal(err)
	}
	var vf vectorFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&vf); err != nil {
		tb.Fatalf("%s: %v", vectorsPath, err)
	}
	return &vf
}

// TestVectors checks that the implementation reproduces the golden vector
// file byte for byte, then runs every vector in it. With -update it
// rewrites the file instead.
func TestVectors(t *testing.T) {
	want := encodeVectors(t, generateVectors(t))
	if *update {
		if err := os.WriteFile(vectorsPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the generated vectors; if the change is intended, run: go test ./pkg/e2ee -run TestVectors -update", vectorsPath)
	}
	vf := loadVectors(t)
	if len(vf.Envelope) == 0 || len(vf.SealedKey) == 0 || len(vf.File) == 0 {
		t.Fatal("vector file has an empty section")
	}
	for _, v := range vf.Envelope {
		t.Run("envelope/"+v.Name, func(t *testing.T) { checkEnvVector(t, v) })
	}
	for _, v := range vf.SealedKey {
		t.Run("sealed_key/"+v.Name, func(t *testing.T) { checkSealedVector(t, v) })
	}
	files := map[string][]byte{}
	for _, v := range vf.File {
		t.Run("file/"+v.Name, func(t *testing.T) { checkFileVector(t, v, files) })
	}
}

func checkEnvVector(t *testing.T, v envVector) {
	b := unhex(v.Envelope)
	var key *e2ee.RoomKey
	if v.OpenKey != "" {
		k := e2ee.RoomKey(unhex(v.OpenKey))
		key = &k
	}
	pt, err := receive(b, unhex(v.VerifyKey), v.OpenRoom, v.OpenEpoch, key)
	if got := errName(err); got != v.Error {
		t.Fatalf("error %q (%v), want %q", got, err, v.Error)
	}
	if v.Error != "" {
		return
	}
	if !bytes.Equal(pt, unhex(v.Plaintext)) {
		t.Fatal("plaintext differs")
	}
	// Re-seal from the inputs.
	var sealKey *e2ee.RoomKey
	if v.RoomKey != "" {
		k := e2ee.RoomKey(unhex(v.RoomKey))
		sealKey = &k
	}
	h := e2ee.Header{Cleartext: v.Cleartext, Room: v.Room, Epoch: v.Epoch, ID: [16]byte(unhex(v.ID)), Time: v.Time}
	again, err := e2ee.Seal(h, sealKey, unhex(v.Plaintext), ed25519.NewKeyFromSeed(unhex(v.SenderSeed)), bytes.NewReader(unhex(v.Nonce)))
	if err != nil || !bytes.Equal(again, b) {
		t.Fatalf("re-sealing gives other bytes: %v", err)
	}
}

func checkSealedVector(t *testing.T, v sealedVector) {
	c := e2ee.SealedKeyContext{Room: v.Room, Epoch: v.Epoch, Recipient: [32]byte(unhex(v.RecipientUser))}
	key, err := e2ee.OpenRoomKey(unhex(v.Sealed), c, [32]byte(unhex(v.OpenerPriv)), [32]byte(unhex(v.SealerPub)))
	if got := errName(err); got != v.Error {
		t.Fatalf("error %q (%v), want %q", got, err, v.Error)
	}
	if v.Error != "" {
		return
	}
	if hx(key[:]) != v.RoomKey {
		t.Fatal("room key differs")
	}
	sealerPriv := [32]byte(unhex(v.SealerPriv))
	if e2ee.XPublic(sealerPriv) != [32]byte(unhex(v.SealerPub)) {
		t.Fatal("sealer_pub is not XPublic(sealer_priv)")
	}
	again, err := e2ee.SealRoomKey(key, c, sealerPriv, [32]byte(unhex(v.RecipientPub)), bytes.NewReader(unhex(v.Nonce)))
	if err != nil || hx(again) != v.Sealed {
		t.Fatalf("re-sealing gives other bytes: %v", err)
	}
}

func checkFileVector(t *testing.T, v fileVector, files map[string][]byte) {
	key := e2ee.FileKey(unhex(v.Key))
	var ct []byte
	switch {
	case v.Base != "":
		base, ok := files[v.Base]
		if !ok {
			t.Fatalf("base %q not found before this vector", v.Base)
		}
		ct = v.Mutation.apply(base)
	case v.Ciphertext != "":
		ct = unhex(v.Ciphertext)
	default:
		var pt []byte
		if v.PlaintextSeed != "" {
			pt = streamBytes(v.PlaintextSeed, int(v.PlaintextSize))
		} else {
			pt = unhex(v.Plaintext)
		}
		var buf bytes.Buffer
		if _, err := e2ee.EncryptFile(&buf, bytes.NewReader(pt), key); err != nil {
			t.Fatal(err)
		}
		ct = buf.Bytes()
	}
	if int64(len(ct)) != v.CiphertextSize || sha(ct) != v.CiphertextSHA256 {
		t.Fatal("ciphertext size or SHA-256 differs")
	}
	if v.Error == "" {
		files[v.Name] = ct
		if got := e2ee.EncryptedFileSize(v.PlaintextSize); got != v.CiphertextSize {
			t.Fatalf("EncryptedFileSize = %d", got)
		}
	}
	d, err := e2ee.NewFileDecrypter(bytes.NewReader(ct), key)
	var pt []byte
	if err == nil {
		pt, err = io.ReadAll(d)
	}
	if got := errName(err); got != v.Error {
		t.Fatalf("error %q (%v), want %q", got, err, v.Error)
	}
	if v.Error == "" && (int64(len(pt)) != v.PlaintextSize || sha(pt) != v.PlaintextSHA256) {
		t.Fatal("plaintext differs")
	}
}
