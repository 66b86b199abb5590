package blobstore

import "context"

// UnreferencedChunks exposes the chunk subjects no metadata refers to.
func (s *ObjectStore) UnreferencedChunks(ctx context.Context) ([]string, error) {
	return s.unreferencedChunks(ctx)
}

// ChunkSubject exposes the subject of an upload's chunks.
func (s *ObjectStore) ChunkSubject(nuid string) string { return s.chunkSubject(nuid) }

// StreamName exposes the name of the bucket's stream.
func StreamName(bucket string) string { return streamName(bucket) }

// SetBeforeMeta installs a hook run between reading a name's metadata and
// the conditional publish of the new metadata.
func (s *ObjectStore) SetBeforeMeta(f func(id string)) { s.beforeMeta = f }
