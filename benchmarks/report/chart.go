package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"strconv"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// A chart is a family's ratios against crypto/tls as grouped horizontal
// bars: one group per row, one bar per conn. An absolute chart
// (newAbsChart) shows a family without crypto/tls by its own values
// instead: the bars' ratio fields then hold a unit's median, min and max.
type chart struct {
	title, subtitle, axis string
	faster                float64 // the side of 1× that is faster: 1 right, -1 left
	conns                 []string
	groups                []chartGroup

	// Absolute charts only.
	abs    bool
	unit   string    // of the values
	linear bool      // a linear axis from 0, else logarithmic
	ends   [2]string // the words under the axis's ends
}

type chartGroup struct {
	label string
	bars  []chartBar // aligned with chart.conns
}

type chartBar struct {
	ratio
	ok bool // measured in this row
}

// newChart returns the chart of f, or false where there is nothing to
// compare: no crypto/tls, or nothing but crypto/tls.
func newChart(f *family, label string) (*chart, bool) {
	others := f.others()
	if !f.hasBaseline() || len(others) == 0 {
		return nil, false
	}
	sub := "bars start at crypto/tls (1×); " + f.runsText()
	if _, hi := f.runCounts(); hi >= minCI { // some bar has whiskers
		sub += "; whiskers: both medians' 95% confidence intervals, paired worst and best"
	} else {
		sub += "; no whiskers: a 95% confidence interval needs 6 runs"
	}
	sub += "; ~: not significant (p > 0.05)"
	c := &chart{
		title:    title(f) + " · " + label,
		subtitle: sub,
		axis:     f.axis() + ", log scale",
		faster:   1,
		conns:    others,
	}
	if !f.throughput {
		c.faster = -1
	}
	unit := f.metric()
	for _, r := range f.rows {
		var labels []string
		for i, l := range r.labels {
			if l != "" {
				labels = append(labels, showValue(f.rowKeys[i], l))
			}
		}
		g := chartGroup{label: strings.Join(labels, " · ")}
		if g.label == "" {
			g.label = f.name
		}
		for _, conn := range others {
			x, ok := r.ratio(conn, baseline, unit)
			g.bars = append(g.bars, chartBar{ratio: x, ok: ok})
		}
		c.groups = append(c.groups, g)
	}
	return c, true
}

// Layout, in logical pixels; the image is drawn at scale times that so that
// it stays sharp where a page shrinks it to its column.
const (
	scale     = 2
	pad       = 20
	barH      = 18
	barGap    = 3
	groupGap  = 16
	plotW     = 600
	valueRoom = 64
	titleSize = 20
	textSize  = 14
	smallSize = 12
	legendH   = 22
)

var (
	white     = color.RGBA{0xff, 0xff, 0xff, 0xff}
	ink       = color.RGBA{0x22, 0x22, 0x22, 0xff}
	muted     = color.RGBA{0x66, 0x66, 0x66, 0xff}
	gridColor = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	stripe    = color.RGBA{0xf4, 0xf4, 0xf4, 0xff}
)

// connColors keep a conn's color the same in every chart; the palette is
// Okabe and Ito's, which colour-blind readers can tell apart.
var connColors = map[string]color.RGBA{
	"tcp":          {0xa0, 0xa0, 0xa0, 0xff},
	"stdlib":       {0x56, 0xb4, 0xe9, 0xff},
	"userspace":    {0x00, 0x9e, 0x73, 0xff},
	"kernel":       {0xd5, 0x5e, 0x00, 0xff},
	"openssl-ktls": {0xcc, 0x79, 0xa7, 0xff},
	"crypto-tls":   {0x00, 0x00, 0x00, 0xff},
	// BenchmarkProxy's proxies: ktls proxy ("ktls-proxy") in the kernel
	// engine's colour, since it is that engine; the others in the palette's
	// rest, apart from one another.
	"proxy":    {0xd5, 0x5e, 0x00, 0xff},
	"stunnel4": {0x00, 0x72, 0xb2, 0xff},
	"hitch":    {0xe6, 0x9f, 0x00, 0xff},
	"haproxy":  {0xf0, 0xe4, 0x42, 0xff},
	"nginx":    {0x55, 0x55, 0x55, 0xff},
}

var spareColors = []color.RGBA{
	{0xe6, 0x9f, 0x00, 0xff},
	{0x00, 0x72, 0xb2, 0xff},
	{0xf0, 0xe4, 0x42, 0xff},
	{0x55, 0x55, 0x55, 0xff},
}

func (c *chart) colors() []color.RGBA {
	out := make([]color.RGBA, len(c.conns))
	spare := 0
	for i, conn := range c.conns {
		if col, ok := connColors[strings.TrimPrefix(conn, "ktls-")]; ok {
			out[i] = col
			continue
		}
		out[i] = spareColors[spare%len(spareColors)]
		spare++
	}
	return out
}

type faces struct{ title, text, small font.Face }

func newFaces() (*faces, error) {
	regular, err := opentype.Parse(goregular.TTF)
	if err != nil {
		return nil, err
	}
	bold, err := opentype.Parse(gobold.TTF)
	if err != nil {
		return nil, err
	}
	face := func(f *opentype.Font, size float64) (font.Face, error) {
		return opentype.NewFace(f, &opentype.FaceOptions{Size: size * scale, DPI: 72, Hinting: font.HintingFull})
	}
	var fs faces
	if fs.title, err = face(bold, titleSize); err != nil {
		return nil, err
	}
	if fs.text, err = face(regular, textSize); err != nil {
		return nil, err
	}
	if fs.small, err = face(regular, smallSize); err != nil {
		return nil, err
	}
	return &fs, nil
}

// canvas draws in logical pixels.
type canvas struct {
	img *image.RGBA
}

func px(v float64) int { return int(math.Round(v * scale)) }

func (cv *canvas) rect(x0, y0, x1, y1 float64, col color.Color) {
	r := image.Rect(px(x0), px(y0), px(x1), px(y1))
	draw.Draw(cv.img, r, image.NewUniform(col), image.Point{}, draw.Over)
}

// width measures s in logical pixels.
func width(f font.Face, s string) float64 {
	return float64(font.MeasureString(f, s)) / 64 / scale
}

// text draws s with its left edge at x (or its right edge, or its centre,
// by align: 0, 1, 0.5) and its capitals centred on cy.
func (cv *canvas) text(f font.Face, x, cy float64, align float64, s string, col color.Color) {
	x -= align * width(f, s)
	capH := float64(f.Metrics().CapHeight) / 64
	d := font.Drawer{
		Dst:  cv.img,
		Src:  image.NewUniform(col),
		Face: f,
		Dot:  fixed.Point26_6{X: fixed.Int26_6(math.Round(x * scale * 64)), Y: fixed.I(int(math.Round(cy*scale + capH/2)))},
	}
	d.DrawString(s)
}

// layout is where things go, in logical pixels.
type layout struct {
	w, h          float64
	plotX, plotY  float64 // the top left of the bars' area
	plotH         float64
	axisX         float64 // where the axis starts, right of room for values left of it
	dmin, dmax    float64 // the axis's ends, in ratios
	ticks         []float64
	linear        bool    // an absolute chart's linear axis
	legendRows    [][]int // indexes into conns
	legendY       float64
	groupH        float64
	titleY, subY  float64
	tickY, axisY  float64
	legendWidths  []float64
	labelColWidth float64
}

// x places a ratio on the axis, which is logarithmic: 2× and 0.5× are as
// far from 1×, and a tcp ceiling at 10× does not squeeze the rest.
func (l *layout) x(v float64) float64 {
	if l.linear {
		return l.axisX + (v-l.dmin)/(l.dmax-l.dmin)*plotW
	}
	return l.axisX + math.Log(v/l.dmin)/math.Log(l.dmax/l.dmin)*plotW
}

func (c *chart) layout(fs *faces) layout {
	var l layout
	for _, g := range c.groups {
		l.labelColWidth = max(l.labelColWidth, width(fs.text, g.label))
	}
	l.plotX = pad + l.labelColWidth + 12
	l.axisX = l.plotX + valueRoom
	l.w = l.axisX + plotW + valueRoom + pad
	l.w = max(l.w, 2*pad+width(fs.title, c.title), 2*pad+width(fs.small, c.subtitle))
	l.titleY = pad + titleSize/2
	l.subY = l.titleY + titleSize/2 + 6 + smallSize/2
	// The legend wraps at the image's width.
	y := l.subY + smallSize/2 + 12 + legendH/2
	l.legendY = y
	var rowW float64
	for i, conn := range c.conns {
		iw := 14 + 6 + width(fs.text, conn) + 20
		l.legendWidths = append(l.legendWidths, iw)
		if len(l.legendRows) == 0 || rowW+iw > l.w-2*pad {
			l.legendRows = append(l.legendRows, nil)
			rowW = 0
		}
		l.legendRows[len(l.legendRows)-1] = append(l.legendRows[len(l.legendRows)-1], i)
		rowW += iw
	}
	// Room for the "crypto/tls" label over the 1× line.
	l.plotY = l.legendY + float64(len(l.legendRows)-1)*legendH + legendH/2 + 10 + smallSize + 6
	n := float64(len(c.conns))
	l.groupH = n*barH + (n-1)*barGap + groupGap
	l.plotH = float64(len(c.groups)) * l.groupH
	l.tickY = l.plotY + l.plotH + 8 + smallSize/2
	l.axisY = l.tickY + smallSize/2 + 10 + textSize/2
	l.h = l.axisY + textSize/2 + pad

	// The axis fits the bars and, within reason, the whiskers: one noisy
	// run must not squeeze every bar into the middle of the chart.
	bmin, bmax := 1.0, 1.0
	wmin, wmax := math.Inf(1), 0.0
	for _, g := range c.groups {
		for _, b := range g.bars {
			if b.ok && b.r > 0 {
				bmin, bmax = min(bmin, b.r), max(bmax, b.r)
				if b.measured() && b.lo > 0 {
					wmin, wmax = min(wmin, b.lo), max(wmax, b.hi)
				}
			}
		}
	}
	if c.abs {
		c.absAxis(&l, fs)
		return l
	}
	l.dmax = max(bmax*1.06, min(wmax, bmax*1.5), 1.1)
	l.dmin = min(bmin/1.06, max(wmin, bmin/1.5), 1/1.1)
	l.ticks = ticks(l.dmin, l.dmax, plotW/math.Log(l.dmax/l.dmin), func(s string) float64 { return width(fs.small, s) })
	return l
}

// ticks picks the densest round ratios between lo and hi whose labels,
// measure wide, stay apart, perLog pixels being one e-fold: steps of 0.05 to
// 1 on a narrow axis, powers of 2 on a wide one. 1 is always one of them.
func ticks(lo, hi, perLog float64, measure func(string) float64) []float64 {
	var cands [][]float64
	if hi/lo <= 4 {
		for _, step := range []float64{0.05, 0.1, 0.2, 0.25, 0.5, 1} {
			var t []float64
			for k := math.Ceil(lo / step); k*step <= hi; k++ {
				t = append(t, math.Round(k*step*1e6)/1e6)
			}
			cands = append(cands, t)
		}
	}
	for stride := 1; stride <= 64; stride *= 2 {
		var t []float64
		for k := math.Ceil(math.Log2(lo) / float64(stride)); ; k++ {
			v := math.Pow(2, k*float64(stride))
			if v > hi {
				break
			}
			t = append(t, v)
		}
		cands = append(cands, t)
	}
	for _, t := range cands {
		ok := len(t) >= 2
		for i := 1; ok && i < len(t); i++ {
			gap := (measure(ratioLabel(t[i]))+measure(ratioLabel(t[i-1])))/2 + 16
			ok = math.Log(t[i]/t[i-1])*perLog >= gap
		}
		if ok {
			return t
		}
	}
	return []float64{1}
}

// size is the image's size in pixels.
func (c *chart) size(fs *faces) (int, int) {
	l := c.layout(fs)
	return px(l.w), px(l.h)
}

func (c *chart) render() (*image.RGBA, error) {
	fs, err := newFaces()
	if err != nil {
		return nil, fmt.Errorf("fonts: %w", err)
	}
	l := c.layout(fs)
	cv := &canvas{img: image.NewRGBA(image.Rect(0, 0, px(l.w), px(l.h)))}
	cv.rect(0, 0, l.w, l.h, white)
	x := l.x
	cols := c.colors()

	// Every other group on a stripe, so a row reads across to its values.
	for i := range c.groups {
		if i%2 == 1 {
			y := l.plotY + float64(i)*l.groupH
			cv.rect(pad/2, y, l.w-pad/2, y+l.groupH, stripe)
		}
	}
	tickLabel := ratioLabel
	if c.abs {
		tickLabel = absLabel
	}
	for _, v := range l.ticks {
		cv.rect(x(v)-0.5, l.plotY, x(v)+0.5, l.plotY+l.plotH, gridColor)
		cv.text(fs.small, x(v), l.tickY, 0.5, tickLabel(v), muted)
	}
	// Bars grow from 1×, right for more, left for less; their values are
	// drawn last. An absolute chart's grow from the axis's start.
	one := l.axisX
	if !c.abs {
		one = x(1)
	}
	var values []func()
	for gi, g := range c.groups {
		gy := l.plotY + float64(gi)*l.groupH + groupGap/2
		cv.text(fs.text, l.plotX-12, gy+(l.groupH-groupGap)/2, 1, g.label, ink)
		bg := white
		if gi%2 == 1 {
			bg = stripe
		}
		for bi, b := range g.bars {
			y0 := gy + float64(bi)*(barH+barGap)
			cy := y0 + barH/2
			if c.abs && b.ok && b.r <= 0 {
				cv.text(fs.small, one+6, cy, 0, c.valueLabel(b.r), muted)
				continue
			}
			if !b.ok || b.r <= 0 {
				cv.text(fs.small, one+6, cy, 0, "not measured", muted)
				continue
			}
			end := x(b.r)
			cv.rect(min(one, end-1), y0, max(one, end+1), y0+barH, cols[bi])
			left, right := end, end
			if b.measured() {
				// A whisker past the axis's end stops there, capless.
				lo, hi := x(max(b.lo, l.dmin)), x(min(b.hi, l.dmax))
				cv.rect(lo, cy-0.75, hi, cy+0.75, ink)
				if b.lo >= l.dmin {
					cv.rect(lo-0.75, cy-5, lo+0.75, cy+5, ink)
				}
				if b.hi <= l.dmax {
					cv.rect(hi-0.75, cy-5, hi+0.75, cy+5, ink)
				}
				left, right = min(left, lo), max(right, hi)
			}
			v := fmt.Sprintf("%.2f×", b.r)
			if c.abs {
				v = c.valueLabel(b.r)
			} else if b.noisy() {
				v = "~" + v
			}
			tw := width(fs.small, v)
			tx := right + 7
			if !c.abs && b.r < 1 {
				tx = left - 7 - tw
			}
			values = append(values, func() {
				// On the band's colour, so that the 1× line does not cross it.
				cv.rect(tx-2, cy-smallSize/2-1, tx+tw+2, cy+smallSize/2+1, bg)
				cv.text(fs.small, tx, cy, 0, v, ink)
			})
		}
	}
	// The baseline at 1×, over the bars and under their values.
	cv.rect(one-1, l.plotY-4, one+1, l.plotY+l.plotH, ink)
	for _, draw := range values {
		draw()
	}
	if !c.abs {
		cv.text(fs.small, one, l.plotY-6-smallSize/2, 0.5, "crypto/tls", ink)
	}

	cv.text(fs.title, pad, l.titleY, 0, c.title, ink)
	cv.text(fs.small, pad, l.subY, 0, c.subtitle, muted)
	for ri, row := range l.legendRows {
		lx := float64(pad)
		cy := l.legendY + float64(ri)*legendH
		for _, i := range row {
			cv.rect(lx, cy-7, lx+14, cy+7, cols[i])
			cv.text(fs.text, lx+20, cy, 0, c.conns[i], ink)
			lx += l.legendWidths[i]
		}
	}
	cv.text(fs.text, l.axisX+plotW/2, l.axisY, 0.5, c.axis, ink)
	left, right := "← slower", "faster →"
	if c.faster < 0 {
		left, right = "← faster", "slower →"
	}
	if c.abs {
		left, right = c.ends[0], c.ends[1]
	}
	cv.text(fs.small, l.axisX, l.axisY, 0, left, muted)
	cv.text(fs.small, l.axisX+plotW, l.axisY, 1, right, muted)
	return cv.img, nil
}

func ratioLabel(v float64) string {
	if v < 0.01 {
		return strconv.FormatFloat(v, 'g', 2, 64) + "×"
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + "×"
}

// encode renders the chart as PNG; the same chart gives the same bytes.
func (c *chart) encode() ([]byte, error) {
	img, err := c.render()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
