package userns

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Range is a block of subordinate ids: Count ids from Start.
type Range struct {
	Start, Count uint32
}

// ParseSubIDs returns the ranges of /etc/subuid or /etc/subgid (read from r)
// that belong to the user, given by name or by numeric id, in file order.
// Comment lines and blank lines are skipped; malformed lines are an error
// naming the line.
func ParseSubIDs(r io.Reader, name string, id uint32) ([]Range, error) {
	var out []Range
	idStr := strconv.FormatUint(uint64(id), 10)
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		f := strings.Split(s, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: %q: want NAME:START:COUNT", line, s)
		}
		if f[0] != name && f[0] != idStr {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > 1<<32 {
			return nil, fmt.Errorf("line %d: %q: START and COUNT must be numbers, COUNT > 0", line, s)
		}
		out = append(out, Range{Start: uint32(start), Count: uint32(count)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// readSubIDs reads the user's ranges from file; a missing file means none.
func readSubIDs(file, name string, id uint32) ([]Range, error) {
	f, err := os.Open(file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rs, err := ParseSubIDs(f, name, id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return rs, nil
}
