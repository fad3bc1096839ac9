package transport

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestZZStressConn(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	seeds := seedFrames()
	for i := range 200000 {
		d := bytes.Clone(seeds[r.IntN(len(seeds))])
		for range r.IntN(4) {
			if len(d) > 0 {
				d[r.IntN(len(d))] = byte(r.Uint32())
			}
		}
		if r.IntN(3) == 0 && len(d) > 0 {
			d = d[:r.IntN(len(d))]
		}
		tr := bareTransport()
		c := newConn(tr, &fakeConn{r: bytes.NewReader(d)}, &frameReader{r: bytes.NewReader(d), max: tr.cfg.MaxFrameSize}, 1, nil)
		tr.wg.Add(1)
		c.readLoop()
		tr.wg.Wait()
		tr.cancel()
		_ = i
	}
}
