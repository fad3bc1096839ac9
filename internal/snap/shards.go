package snap

import (
	"fmt"
	"slices"
)

// Shards returns the shards that have snapshot files, ascending. It lists the
// files without reading them: some may be damaged.
func (s *Store) Shards() ([]uint64, error) {
	names, err := s.fs.List(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list snapshot dir: %w", err)
	}
	var out []uint64
	for _, name := range names {
		if sh, _, ok := parseName(name); ok && !slices.Contains(out, sh) {
			out = append(out, sh)
		}
	}
	slices.Sort(out)
	return out, nil
}
