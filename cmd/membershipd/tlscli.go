package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// defaultTLSDir is where `membershipd tls` writes, and the directory the
// server's TLS flag help names.
const defaultTLSDir = "deploy/tls"

// Lifetimes of the development certificates. 825 days is the longest leaf
// lifetime that every common client accepts from a private CA.
const (
	devCALifetime   = 10 * 365 * 24 * time.Hour
	devLeafLifetime = 825 * 24 * time.Hour
	devClockSkew    = time.Hour // NotBefore is backdated by this much
)

// Names of the files `tls init` writes in its directory.
const (
	caCertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	serverCertName = "server"
)

const tlsUsage = `usage:
  membershipd tls init [--dir DIR] [--host NAME]... [--force]
      make a development CA (ca.crt, ca.key) and a server certificate
      (server.crt, server.key) signed by it
  membershipd tls node --name NODE [--dir DIR] [--host NAME]... [--force]
      issue NODE.crt and NODE.key from the CA in DIR, for another cluster
      node's routes (and its client listener)

Certificates cover localhost, 127.0.0.1 and ::1, plus every --host (a DNS
name or an IP address; repeat the flag or separate names with commas), and
serve both server and client authentication, so one certificate serves
the client listener, the HTTPS API and mutual route TLS. Keys are ECDSA
P-256 and written with mode 0600. DIR defaults to %s. Existing files are
kept unless --force is given.

These certificates are for development and testing only: anyone holding
ca.key can impersonate every node. Use your own PKI in production.
`

// tlsOpts are the flags of the tls sub-commands.
type tlsOpts struct {
	dir   string
	hosts hostList
	force bool
	name  string
}

// hostList is a repeatable --host flag; each value may list several names
// separated by commas.
type hostList []string

func (h *hostList) String() string { return strings.Join(*h, ",") }

func (h *hostList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if err := checkHost(s); err != nil {
			return err
		}
		*h = append(*h, s)
	}
	return nil
}

// hostPattern is a DNS name, optionally with a leading wildcard label.
var hostPattern = regexp.MustCompile(`^(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$`)

// checkHost accepts an IP address or a DNS name.
func checkHost(s string) error {
	if net.ParseIP(s) != nil {
		return nil
	}
	if len(s) > 253 || !hostPattern.MatchString(s) {
		return fmt.Errorf("host %q is neither an IP address nor a DNS name", s)
	}
	return nil
}

// nodeNamePattern keeps node names usable as file names (no path
// separators, no dots) and, in lower case, as DNS labels.
var nodeNamePattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_-]{0,62})$`)

// runTLSCLI runs `membershipd tls ARGS` and returns the exit code: 0 on
// success, 1 on failure, 2 on bad usage.
func runTLSCLI(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, tlsUsage, defaultTLSDir)
		return 2
	}
	sub := args[0]
	switch sub {
	case "help", "-h", "--help":
		fmt.Fprintf(stdout, tlsUsage, defaultTLSDir)
		return 0
	case "init", "node":
	default:
		fmt.Fprintf(stderr, "membershipd tls: unknown command %q\n", sub)
		fmt.Fprintf(stderr, tlsUsage, defaultTLSDir)
		return 2
	}

	var opts tlsOpts
	fs := flag.NewFlagSet("membershipd tls "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		if sub == "node" {
			fmt.Fprintln(stderr, "usage: membershipd tls node --name NODE [--dir DIR] [--host NAME]... [--force]")
		} else {
			fmt.Fprintln(stderr, "usage: membershipd tls init [--dir DIR] [--host NAME]... [--force]")
		}
		fs.PrintDefaults()
	}
	fs.StringVar(&opts.dir, "dir", defaultTLSDir, "directory of the CA and the certificates")
	fs.Var(&opts.hosts, "host", "extra DNS name or IP address the certificate is valid for (repeatable, or comma-separated)")
	fs.BoolVar(&opts.force, "force", false, "overwrite existing files")
	if sub == "node" {
		fs.StringVar(&opts.name, "name", "", "node name: the certificate's common name and file names (NODE.crt, NODE.key)")
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "membershipd tls %s: unexpected argument %q\n", sub, pos[0])
		fs.Usage()
		return 2
	}
	if sub == "node" {
		switch {
		case opts.name == "":
			fmt.Fprintln(stderr, "membershipd tls node: missing --name NODE")
			fs.Usage()
			return 2
		case !nodeNamePattern.MatchString(opts.name) || opts.name == "ca":
			fmt.Fprintf(stderr, "membershipd tls node: node name %q: use letters, digits, - and _ (not \"ca\")\n", opts.name)
			return 2
		}
		err = tlsNode(opts, stdout)
	} else {
		err = tlsInit(opts, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "membershipd tls %s: %v\n", sub, err)
		return 1
	}
	return 0
}

// tlsInit makes the development CA and the server certificate.
func tlsInit(opts tlsOpts, stdout io.Writer) error {
	paths := []string{
		filepath.Join(opts.dir, caCertFile), filepath.Join(opts.dir, caKeyFile),
		filepath.Join(opts.dir, serverCertName+".crt"), filepath.Join(opts.dir, serverCertName+".key"),
	}
	if err := refuseOverwrite(paths, opts.force); err != nil {
		return err
	}
	now := time.Now()
	ca, caKey, err := newDevCA(now)
	if err != nil {
		return err
	}
	leaf, leafKey, err := issueDevCert(ca, caKey, "unibus server", opts.hosts, now)
	if err != nil {
		return err
	}
	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return err
	}
	leafKeyPEM, err := keyPEM(leafKey)
	if err != nil {
		return err
	}
	if err := writePEMFiles(opts.dir,
		pemFile{paths[0], certPEM(ca), 0o644},
		pemFile{paths[1], caKeyPEM, 0o600},
		pemFile{paths[2], certPEM(leaf), 0o644},
		pemFile{paths[3], leafKeyPEM, 0o600},
	); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (development CA, valid until %s)\n", paths[0], ca.NotAfter.Format(time.DateOnly))
	fmt.Fprintf(stdout, "wrote %s (CA private key: keep it secret)\n", paths[1])
	fmt.Fprintf(stdout, "wrote %s (server and client auth for %s; valid until %s)\n", paths[2], strings.Join(sanList(leaf), ", "), leaf.NotAfter.Format(time.DateOnly))
	fmt.Fprintf(stdout, "wrote %s\n", paths[3])
	fmt.Fprintf(stdout, `
These are development certificates; do not use them in production.

Serve NATS and the HTTPS API with:
  membershipd --tls-cert %[1]s --tls-key %[2]s --bus-auth enforce
Clients trust the CA with:
  unibus --ca %[3]s ...        (or UNIBUS_CA=%[3]s)
Mutual route TLS on this node, in a cluster:
  --route-tls-cert %[1]s --route-tls-key %[2]s --route-tls-ca %[3]s
Certificates for the other nodes:
  membershipd tls node --dir %[4]s --name NODE --host NODE_ADDRESS
`, paths[2], paths[3], paths[0], opts.dir)
	return nil
}

// tlsNode issues a node certificate from the CA in opts.dir.
func tlsNode(opts tlsOpts, stdout io.Writer) error {
	certPath := filepath.Join(opts.dir, opts.name+".crt")
	keyPath := filepath.Join(opts.dir, opts.name+".key")
	caPath := filepath.Join(opts.dir, caCertFile)
	if err := refuseOverwrite([]string{certPath, keyPath}, opts.force); err != nil {
		return err
	}
	ca, caKey, err := loadDevCA(caPath, filepath.Join(opts.dir, caKeyFile))
	if err != nil {
		return err
	}
	hosts := opts.hosts
	if checkHost(strings.ToLower(opts.name)) == nil {
		hosts = append(hostList{strings.ToLower(opts.name)}, hosts...)
	}
	leaf, leafKey, err := issueDevCert(ca, caKey, opts.name, hosts, time.Now())
	if err != nil {
		return err
	}
	kp, err := keyPEM(leafKey)
	if err != nil {
		return err
	}
	if err := writePEMFiles(opts.dir, pemFile{certPath, certPEM(leaf), 0o644}, pemFile{keyPath, kp, 0o600}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (node %s: server and client auth for %s; valid until %s)\n", certPath, opts.name, strings.Join(sanList(leaf), ", "), leaf.NotAfter.Format(time.DateOnly))
	fmt.Fprintf(stdout, "wrote %s\n", keyPath)
	fmt.Fprintf(stdout, `
These are development certificates; do not use them in production.

Copy %[1]s, %[2]s and %[3]s to node %[4]s and start it with:
  membershipd --route-tls-cert %[1]s --route-tls-key %[2]s --route-tls-ca %[3]s ...
The same pair serves its client listener and HTTPS API:
  --tls-cert %[1]s --tls-key %[2]s --bus-auth enforce
`, certPath, keyPath, caPath, opts.name)
	return nil
}

// refuseOverwrite fails if any of paths exists, unless force is set.
func refuseOverwrite(paths []string, force bool) error {
	if force {
		return nil
	}
	var existing []string
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			existing = append(existing, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: check that --dir is readable", err)
		}
	}
	if len(existing) > 0 {
		return fmt.Errorf("refusing to overwrite %s: pass --force to replace, or --dir to write elsewhere", strings.Join(existing, ", "))
	}
	return nil
}

// newDevCA makes a self-signed CA certificate and its key.
func newDevCA(now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	return newDevCert(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "unibus development CA", Organization: []string{"unibus development"}},
		NotBefore:             now.Add(-devClockSkew),
		NotAfter:              now.Add(devCALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, nil, nil)
}

// issueDevCert makes a certificate for server and client authentication,
// signed by ca, valid for localhost, 127.0.0.1, ::1 and hosts.
func issueDevCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, commonName string, hosts []string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName, Organization: []string{"unibus development"}},
		NotBefore:   now.Add(-devClockSkew),
		NotAfter:    now.Add(devLeafLifetime),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	seen := map[string]bool{}
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			if ip4 := ip.To4(); ip4 != nil {
				ip = ip4
			}
			if !seen[ip.String()] {
				seen[ip.String()] = true
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
			continue
		}
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if !seen[h] {
			seen[h] = true
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return newDevCert(tmpl, ca, caKey)
}

// newDevCert makes an ECDSA P-256 key and its certificate from tmpl, with
// a random serial number, signed by parent with parentKey, or self-signed
// when parent is nil.
func newDevCert(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)); err != nil {
		return nil, nil, err
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// loadDevCA reads the CA certificate and key that `tls init` wrote and
// checks that they belong together.
func loadDevCA(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	fail := func(err error) (*x509.Certificate, *ecdsa.PrivateKey, error) {
		return nil, nil, fmt.Errorf("%w: pass the --dir where `membershipd tls init` wrote ca.crt and ca.key, or make a new CA with `membershipd tls init --force`", err)
	}
	certPEMBytes, err := os.ReadFile(certPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("no CA at %s: run `membershipd tls init` first, or pass the --dir that holds ca.crt and ca.key", certPath)
		}
		return fail(err)
	}
	block, _ := pem.Decode(certPEMBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return fail(fmt.Errorf("%s holds no PEM certificate", certPath))
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fail(fmt.Errorf("parse %s: %w", certPath, err))
	}
	if !ca.IsCA {
		return fail(fmt.Errorf("%s is not a CA certificate", certPath))
	}
	keyPEMBytes, err := os.ReadFile(keyPath)
	if err != nil {
		return fail(err)
	}
	block, _ = pem.Decode(keyPEMBytes)
	if block == nil {
		return fail(fmt.Errorf("%s holds no PEM key", keyPath))
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return fail(fmt.Errorf("parse %s: %w", keyPath, err))
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(ca.PublicKey) {
		return fail(fmt.Errorf("%s is not the key of %s", keyPath, certPath))
	}
	return ca, key, nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// sanList lists the names and addresses a certificate is valid for.
func sanList(c *x509.Certificate) []string {
	out := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// pemFile is a file `membershipd tls` writes.
type pemFile struct {
	path string
	data []byte
	mode fs.FileMode
}

// writePEMFiles writes files, each atomically, into dir, made if needed.
func writePEMFiles(dir string, files ...pemFile) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%w: pass a --dir you can write to", err)
	}
	for _, f := range files {
		if err := writeFileAtomic(f.path, f.data, f.mode); err != nil {
			return fmt.Errorf("write %s: %w: check that --dir is writable", f.path, err)
		}
	}
	return nil
}

// writeFileAtomic writes data to path with mode through a temporary file in
// the same directory, so that a reader never sees half a file and a key is
// never readable by others, even briefly.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
