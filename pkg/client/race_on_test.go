//go:build race

package client

// raceEnabled: the race detector adds allocations of its own.
const raceEnabled = true
