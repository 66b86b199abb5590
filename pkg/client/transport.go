package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/enmanuel/unibus/pkg/api"
)

// What goes wrong between the client and the bus, said so that the user
// knows what to change: the errors of net/http, crypto/tls and nats.go
// name a symptom (an unknown authority, a malformed status line, an
// authorization violation), not the setting that causes it.

// DefaultAPIPort is the port membershipd's API listens on unless told
// otherwise (--http-port).
const DefaultAPIPort = "8470"

// transient reports an error worth trying again after a while: no node
// answered (for want of an answer, not because of a setting), or one said
// to come back later.
func transient(err error) bool {
	var u *UnreachableError
	if errors.As(err, &u) {
		for _, f := range u.Tried {
			var fix *fixError
			if !errors.As(f.Err, &fix) {
				return true
			}
		}
	}
	return api.IsCode(err, api.CodeUnavailable) || api.IsCode(err, api.CodeRateLimited)
}

// fixError is a node that could not be reached because of a setting: the
// message says what to change.
type fixError struct {
	msg string
	err error
}

func (e *fixError) Error() string { return e.msg }
func (e *fixError) Unwrap() error { return e.err }

// settingFault explains a request to node that got no HTTP answer because
// of a setting (a CA, a scheme, a port), with the short reason errors name
// the node with among others; nil when err is no such fault.
func settingFault(node *url.URL, err error) (reason string, fix error) {
	if hint := certHint(err, "--server"); hint != "" {
		return "not trusted: " + hint, &fixError{fmt.Sprintf("cannot trust membershipd at %s: %s", node, hint), err}
	}
	var rhe tls.RecordHeaderError
	msg := err.Error()
	switch {
	case errors.As(err, &rhe) && string(rhe.RecordHeader[:]) == "INFO ", strings.Contains(msg, "malformed HTTP") && strings.Contains(msg, "server_id"),
		strings.Contains(msg, "readLoopPeekFailLocked") && greetsWithINFO(node):
		// A NATS server greets every connection with INFO {…}: as the
		// answer to the request, or before it is sent (net/http then
		// says the server spoke on an idle connection).
		return "a NATS port, not membershipd's API", &fixError{fmt.Sprintf("%s is a NATS port, not membershipd's API: the API listens on a port of its own (%s unless membershipd was given --http-port): set --server or UNIBUS_SERVER to %s://%s", node, DefaultAPIPort, node.Scheme, net.JoinHostPort(node.Hostname(), DefaultAPIPort)), err}
	case errors.As(err, &rhe) && bytes.HasPrefix(rhe.RecordHeader[:], []byte("HTTP/")), strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return "plain HTTP, not HTTPS: use http://" + node.Host, &fixError{fmt.Sprintf("membershipd at %s speaks plain HTTP, not HTTPS: use http://%s in --server or UNIBUS_SERVER", node, node.Host), err}
	}
	return "", nil
}

// greetsWithINFO reports whether the server at node's address speaks
// first, with NATS's INFO line.
func greetsWithINFO(node *url.URL) bool {
	conn, err := net.DialTimeout("tcp", node.Host, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(time.Second))
	b := make([]byte, 5)
	_, err = io.ReadFull(conn, b)
	return err == nil && string(b) == "INFO "
}

// notTheAPI explains an answer that is not the API's JSON: plain HTTP sent
// to membershipd's HTTPS port gets net/http's own 400.
func notTheAPI(resp *http.Response, body []byte) error {
	if resp.StatusCode == http.StatusBadRequest && bytes.Contains(body, []byte("HTTP request to an HTTPS server")) && resp.Request != nil {
		return api.Errorf(api.CodeInvalid, "membershipd at %s speaks HTTPS, not plain HTTP: use https://%s in --server or UNIBUS_SERVER (and --ca or UNIBUS_CA with the bus CA's certificate if it is not one this machine trusts)", resp.Request.URL.Host, resp.Request.URL.Host)
	}
	return nil
}

// certHint says what to do about a certificate the client refused, or ""
// when err is not about one. setting is the flag that names the address.
func certHint(err error, setting string) string {
	var (
		ua  x509.UnknownAuthorityError
		hn  x509.HostnameError
		inv x509.CertificateInvalidError
	)
	msg := err.Error()
	switch {
	case errors.As(err, &ua), strings.Contains(msg, "certificate signed by unknown authority"):
		return "its certificate is signed by an authority this machine does not trust: pass the bus CA's certificate with --ca PATH or UNIBUS_CA (the CA file, e.g. deploy/tls/ca.crt, that `membershipd tls init` made)"
	case errors.As(err, &hn), strings.Contains(msg, "certificate is valid for"), strings.Contains(msg, "certificate is not valid for any names"):
		return fmt.Sprintf("its certificate is not for this host name (%v): use in %s a name the certificate holds, or make a certificate for this one with `membershipd tls init --host NAME`", err, setting)
	case errors.As(err, &inv), strings.Contains(msg, "x509: certificate has expired"):
		return fmt.Sprintf("its certificate is not valid (%v): renew it on the bus host (`membershipd tls init`)", err)
	}
	return ""
}

// natsConnectError explains a failed NATS connect to natsURL. A refused user
// key is explained by the API, which says whether the user is unknown
// (401, with how to get added) or revoked (403), as every API call does.
func (c *Client) natsConnectError(ctx context.Context, natsURL string, err error) error {
	if errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		_, merr := c.Me(ctx)
		if api.IsCode(merr, api.CodeUnauthorized) || api.IsCode(merr, api.CodeRevoked) {
			return merr
		}
		if merr == nil {
			return fmt.Errorf("NATS at %s refused your user key, which membershipd knows as active: you may hold as many bus connections as it allows a user (membershipd --max-connections-per-user), or %s is another bus's NATS: check --nats or UNIBUS_NATS", natsURL, natsURL)
		}
	}
	if hint := certHint(err, "--nats"); hint != "" {
		return fmt.Errorf("cannot trust NATS at %s: %s", natsURL, hint)
	}
	return fmt.Errorf("connect to NATS at %s: %w (pass --nats URL if the advertised one is not reachable from here)", natsURL, err)
}
