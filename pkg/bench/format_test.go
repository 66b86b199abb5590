package bench

import (
	"slices"
	"testing"
)

func TestCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    float64
		want string
	}{
		{0, "0"}, {999, "999"}, {1000, "1,000"}, {24695.4, "24,695"}, {24695.5, "24,696"},
		{1234567, "1,234,567"}, {-1234, "-1,234"},
	}
	for _, tt := range tests {
		if got := count(tt.v); got != tt.want {
			t.Errorf("count(%v) = %q; want %q", tt.v, got, tt.want)
		}
	}
}

func TestMs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    float64
		want string
	}{
		{0, "0.000ms"}, {0.0412, "0.041ms"}, {1, "1.00ms"}, {61.7, "61.70ms"}, {100, "100ms"}, {150.6, "151ms"},
	}
	for _, tt := range tests {
		if got := ms(tt.v); got != tt.want {
			t.Errorf("ms(%v) = %q; want %q", tt.v, got, tt.want)
		}
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	sorted := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		values []int64
		q      float64
		want   int64
	}{
		{nil, 0.5, 0}, {[]int64{7}, 0.99, 7},
		{sorted, 0, 1}, {sorted, 0.5, 5}, {sorted, 0.9, 9}, {sorted, 0.99, 10}, {sorted, 1, 10},
	}
	for _, tt := range tests {
		if got := percentile(tt.values, tt.q); got != tt.want {
			t.Errorf("percentile(%v, %v) = %d; want %d", tt.values, tt.q, got, tt.want)
		}
	}
}

func TestShares(t *testing.T) {
	t.Parallel()
	tests := []struct {
		n, k int
		want []int
	}{
		{10, 1, []int{10}}, {10, 3, []int{4, 3, 3}}, {2, 2, []int{1, 1}}, {100000, 4, []int{25000, 25000, 25000, 25000}},
	}
	for _, tt := range tests {
		if got := shares(tt.n, tt.k); !slices.Equal(got, tt.want) {
			t.Errorf("shares(%d, %d) = %v; want %v", tt.n, tt.k, got, tt.want)
		}
	}
}

func TestPutStamp(t *testing.T) {
	t.Parallel()
	dst := make([]byte, 19)
	putStamp(dst, 1234567890)
	if got, want := string(dst), "0000000001234567890"; got != want {
		t.Errorf("putStamp(1234567890) = %q; want %q", got, want)
	}
}
