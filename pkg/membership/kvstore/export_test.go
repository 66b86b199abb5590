package kvstore

import "github.com/enmanuel/unibus/pkg/membership/store"

// SetKVTestHook makes the JetStream KV store s call fn at the named steps
// of every change ("commit": its data is written, its room document not
// yet); an error from fn stops the change there, as a crash would. nil
// removes the hook. For tests only.
func SetKVTestHook(s store.Store, fn func(step string) error) {
	s.(*jetstreamStore).hook = fn
}

// SetKVValueSizes makes the JetStream KV store s store values in parts
// of part bytes and keep room states of up to inline bytes in their
// documents, so that tests exercise large values with small rooms.
func SetKVValueSizes(s store.Store, part, inline int) {
	js := s.(*jetstreamStore)
	js.part, js.inlineMax = part, inline
}
