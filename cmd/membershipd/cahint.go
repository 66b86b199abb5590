package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// caHint says what to do when a host tool's TLS connection to the bus
// refused the bus's certificate (ca is the tool's --ca, "" if none), or
// "" when err is not about the certificate.
func caHint(err error, ca string) string {
	var (
		ua x509.UnknownAuthorityError
		hn x509.HostnameError
	)
	msg := err.Error()
	switch {
	case (errors.As(err, &ua) || strings.Contains(msg, "certificate signed by unknown authority")) && ca == "":
		return "the bus's TLS certificate is signed by an authority this machine does not trust: pass the bus CA's certificate with --ca (the CA file, e.g. deploy/tls/ca.crt, that `membershipd tls init` made)"
	case errors.As(err, &ua) || strings.Contains(msg, "certificate signed by unknown authority"):
		return fmt.Sprintf("the bus's TLS certificate is not signed by the CA in %s: pass the bus CA's certificate with --ca (e.g. deploy/tls/ca.crt)", ca)
	case errors.As(err, &hn) || strings.Contains(msg, "certificate is valid for"):
		return fmt.Sprintf("the bus's TLS certificate is not for the host of --nats-url (%v): use a host name the certificate holds", err)
	}
	return ""
}
