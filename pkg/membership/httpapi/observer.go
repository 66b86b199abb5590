package httpapi

// Observer is told of what the API does that an operator counts: the
// request signatures it refuses, the sealed keys it delivers and the
// rekeys it commits (package metrics counts them for Prometheus). Its
// methods are called on the request path, concurrently: they must be
// cheap and must not block.
type Observer interface {
	// SignatureFailed is called once for every request whose signature
	// is refused, with one of the Sig… reasons. Under [AuthSoft] a
	// signature refused but let through is reported too.
	SignatureFailed(reason string)
	// KeysDelivered is called after the sealed keys of a rekey are
	// published to their members: delivered were published, failed
	// were not (the members read them from the API instead).
	KeysDelivered(delivered, failed int)
	// Rekeyed is called after every committed rekey, with one of the
	// Rekey… triggers.
	Rekeyed(trigger string)
}

// The reasons a request signature is refused, as [Observer.SignatureFailed]
// is told.
const (
	SigMissing   = "missing"   // no Authorization header
	SigMalformed = "malformed" // the header does not parse
	SigClock     = "clock"     // signed outside SignatureWindow of the server's clock
	SigInvalid   = "invalid"   // the signature does not verify
	SigBody      = "body"      // it covers another body than the one sent
	SigReplay    = "replay"    // its nonce was used already
)

// SigReasons lists every reason, for an observer that sets its series up
// in advance.
var SigReasons = []string{SigMissing, SigMalformed, SigClock, SigInvalid, SigBody, SigReplay}

// The triggers of a rekey, as [Observer.Rekeyed] is told.
const (
	RekeyRemoval  = "removal"  // a rekey that removes members (or a leave)
	RekeyRotation = "rotation" // a rekey that removes nobody
	RekeyAdd      = "add"      // a rekeying add (re-adding a former member, or asked for)
)

// RekeyTriggers lists every trigger.
var RekeyTriggers = []string{RekeyRemoval, RekeyRotation, RekeyAdd}

func (s *Server) signatureFailed(reason string) {
	if s.Observer != nil {
		s.Observer.SignatureFailed(reason)
	}
}

func (s *Server) keysDelivered(delivered, failed int) {
	if s.Observer != nil {
		s.Observer.KeysDelivered(delivered, failed)
	}
}

func (s *Server) rekeyed(trigger string) {
	if s.Observer != nil {
		s.Observer.Rekeyed(trigger)
	}
}
