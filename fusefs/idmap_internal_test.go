package fusefs

import (
	"errors"
	"slices"
	"testing"
)

func TestParseIDMaps(t *testing.T) {
	tests := []struct {
		in      string
		want    []IDMap
		wantErr bool
	}{
		{"0:1000:1", []IDMap{{0, 1000, 1}}, false},
		{"0:1000:1:1:110000:65536", []IDMap{{0, 1000, 1}, {1, 110000, 65536}}, false},
		{"0:1000:1,1:110000:65536", []IDMap{{0, 1000, 1}, {1, 110000, 65536}}, false},
		{"0:1000", nil, true},
		{"0:x:1", nil, true},
		{"0:1:0", nil, true},
		{"", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseIDMaps(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrBadOption) {
				t.Errorf("ParseIDMaps(%q) = %v, %v; want ErrBadOption", tt.in, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParseIDMaps(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestShownStored(t *testing.T) {
	maps := []IDMap{{0, 1000, 1}, {1, 110000, 65536}}
	seven := uint32(7)
	tests := []struct {
		maps      []IDMap
		squash    *uint32
		stored    uint32
		shown     uint32
		roundTrip bool
	}{
		{nil, nil, 42, 42, true},
		{maps, nil, 0, 1000, true},
		{maps, nil, 1, 110000, true},
		{maps, nil, 65536, 175535, true},
		{maps, nil, 65537, overflowID, false},
		{maps, &seven, 1, 7, false},
	}
	for _, tt := range tests {
		if got := shown(tt.maps, tt.squash, tt.stored); got != tt.shown {
			t.Errorf("shown(%v, %v, %d) = %d, want %d", tt.maps, tt.squash, tt.stored, got, tt.shown)
		}
		if !tt.roundTrip {
			continue
		}
		if back, ok := stored(tt.maps, tt.shown); !ok || back != tt.stored {
			t.Errorf("stored(%v, %d) = %d, %v; want %d", tt.maps, tt.shown, back, ok, tt.stored)
		}
	}
	if _, ok := stored(maps, 5); ok {
		t.Error("stored of an id outside every range succeeded")
	}
}
