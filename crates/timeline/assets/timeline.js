// rprof timeline: decodes the embedded data (layout in crates/timeline/src/json.rs), builds the
// lane labels as DOM elements, draws the lanes and the time axis on canvases, and handles
// hover, click, zoom and pan. Names come from the profiled program: they only ever reach the
// page through textContent and the canvas, shown with control characters as \xNN.
(function () {
  'use strict';

  var STATES = [
    { name: 'running', label: 'running (on CPU)', color: '#2ca02c' },
    { name: 'runnable', label: 'runnable: waiting for a CPU (cpu)', color: '#f0b400' },
    { name: 'lock', label: 'blocked on a lock (lock)', color: '#d62728' },
    { name: 'sleep', label: 'sleeping (sleep)', color: '#9467bd' },
    { name: 'io', label: 'waiting for I/O (io)', color: '#1f77b4' },
    { name: 'other', label: 'off CPU, other (other)', color: '#8c8c8c' }
  ];
  var NSTATES = STATES.length;
  var ALIVE = '#e9e9e9';
  var ROW = 20;
  var ALPHA = [0, 0.35, 0.55, 0.75, 1];
  var MIN_VIEW = 1000; // ns: the deepest zoom

  var body = document.body;

  function fail(message) {
    var el = document.getElementById('error');
    el.textContent = 'The timeline could not be drawn: ' + message;
    el.hidden = false;
    body.setAttribute('data-error', message);
  }
  window.addEventListener('error', function (ev) { fail(String(ev.message)); });

  function visible(s) {
    return String(s)
      .replace(/[\u0000-\u001f\u007f-\u009f]/g, function (c) {
        return '\\x' + ('0' + c.charCodeAt(0).toString(16)).slice(-2);
      })
      .replace(/[\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, function (c) {
        return '\\u{' + c.charCodeAt(0).toString(16) + '}';
      });
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // Durations and times: three significant digits in the largest fitting unit.
  function fmt(ns) {
    var a = Math.abs(ns), v, u;
    if (a >= 1e9) { v = ns / 1e9; u = ' s'; }
    else if (a >= 1e6) { v = ns / 1e6; u = ' ms'; }
    else if (a >= 1e3) { v = ns / 1e3; u = ' \u00b5s'; }
    else { return Math.round(ns) + ' ns'; }
    var d = Math.abs(v) >= 100 ? 1 : Math.abs(v) >= 10 ? 2 : 3;
    return v.toFixed(d) + u;
  }

  // Axis labels: as many decimals as the tick step needs.
  function fmtTick(ns, step) {
    var unit = step >= 1e8 ? 1e9 : step >= 1e5 ? 1e6 : step >= 100 ? 1e3 : 1;
    var name = unit === 1e9 ? ' s' : unit === 1e6 ? ' ms' : unit === 1e3 ? ' \u00b5s' : ' ns';
    var d = Math.max(0, Math.ceil(-Math.log10(step / unit) - 1e-9));
    return (ns / unit).toFixed(Math.min(d, 6)) + name;
  }

  // First index i with a[i] >= x in the sorted array a.
  function lowerBound(a, x) {
    var lo = 0, hi = a.length;
    while (lo < hi) {
      var mid = (lo + hi) >>> 1;
      if (a[mid] < x) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  var data = JSON.parse(document.getElementById('timeline-data').textContent);
  var frames = data.frames, nodes = data.nodes;
  var duration = Math.max(1, data.duration);
  var sampleNs = Math.max(1, data.sample_ns);

  // The frames of stack reference `ref` (0: none), leaf first.
  function stackFrames(ref) {
    var out = [], n = ref - 1, guard = 0;
    while (n >= 0 && 2 * n + 1 < nodes.length && guard++ < 100000) {
      out.push(frames[nodes[2 * n + 1]]);
      n = nodes[2 * n] - 1;
    }
    return out;
  }

  // Rows: a process header, then its threads' lanes.
  var rows = [];
  var laneCount = 0;
  data.processes.forEach(function (p) {
    rows.push({ proc: p });
    p.threads.forEach(function (t) {
      var n = t.spans.length / 4, i, s = 0;
      var ss = new Float64Array(n), se = new Float64Array(n), me = new Float64Array(n);
      var st = new Uint8Array(n), sk = new Int32Array(n);
      var max = 0;
      for (i = 0; i < n; i++) {
        s += t.spans[4 * i];
        ss[i] = s;
        se[i] = s + t.spans[4 * i + 1];
        st[i] = Math.min(t.spans[4 * i + 2], NSTATES - 1);
        sk[i] = t.spans[4 * i + 3];
        max = Math.max(max, se[i]);
        me[i] = max; // running maximum of the ends: where a search by time may start
      }
      var m = t.samples.length / 2, time = 0;
      var ts = new Float64Array(m), tk = new Int32Array(m);
      for (i = 0; i < m; i++) {
        time += t.samples[2 * i];
        ts[i] = time;
        tk[i] = t.samples[2 * i + 1];
      }
      t.spans = t.samples = null; // decoded: the typed arrays hold them
      rows.push({ lane: { tid: t.tid, name: t.name, proc: p, start: t.start, end: t.end,
        ss: ss, se: se, me: me, st: st, sk: sk, ts: ts, tk: tk } });
      laneCount++;
    });
  });
  data = null; // the typed arrays hold what is needed

  // Legend.
  var legend = document.getElementById('legend');
  function key(color, text) {
    var k = el('span', 'key');
    var sw = el('span', 'swatch');
    sw.style.background = color;
    k.appendChild(sw);
    k.appendChild(el('span', null, text));
    legend.appendChild(k);
  }
  STATES.forEach(function (s) { key(s.color, s.label); });
  key(ALIVE, 'alive, nothing recorded');

  // Lane labels.
  var labels = document.getElementById('labels');
  rows.forEach(function (row) {
    var div;
    if (row.proc) {
      div = el('div', 'proc');
      div.appendChild(el('span', 'name', visible(row.proc.name)));
      div.appendChild(el('span', 'id', 'pid ' + row.proc.pid));
      div.setAttribute('data-pid', row.proc.pid);
      div.title = visible(row.proc.name) + ' (pid ' + row.proc.pid + ')';
    } else {
      var l = row.lane;
      div = el('div', 'lane');
      div.appendChild(el('span', 'name', visible(l.name)));
      div.appendChild(el('span', 'id', 'tid ' + l.tid));
      div.setAttribute('data-tid', l.tid);
      div.setAttribute('data-samples', l.ts.length);
      div.setAttribute('data-spans', l.ss.length);
      div.title = visible(l.name) + ' (tid ' + l.tid + '): ' + l.ts.length + ' samples, ' +
        l.ss.length + ' states, alive ' + fmt(l.end - l.start);
    }
    labels.appendChild(div);
  });
  body.setAttribute('data-lanes', laneCount);

  var canvas = document.getElementById('lanes');
  var axis = document.getElementById('axis');
  var scroll = document.getElementById('scroll');
  var corner = document.getElementById('corner');
  var ctx = canvas.getContext('2d');
  var actx = axis.getContext('2d');
  var W = 100, H = 0, dpr = 1, acc = new Float32Array(0);
  var v0 = 0, v1 = duration;

  function layout() {
    dpr = window.devicePixelRatio || 1;
    var lw = Math.min(Math.max(labels.scrollWidth, 200), 360);
    labels.style.width = lw + 'px';
    corner.style.width = lw + 'px';
    W = Math.max(100, scroll.clientWidth - lw - 1);
    H = rows.length * ROW;
    canvas.style.width = W + 'px';
    canvas.style.height = H + 'px';
    canvas.width = Math.round(W * dpr);
    canvas.height = Math.round(H * dpr);
    axis.style.width = W + 'px';
    axis.width = Math.round(W * dpr);
    axis.height = Math.round(24 * dpr);
    acc = new Float32Array(W * NSTATES);
  }

  // Adds the time [s, e) in state k to the per-pixel coverage of the lane being drawn.
  function cover(s, e, k, scale) {
    var x0 = (s - v0) * scale, x1 = (e - v0) * scale;
    if (x1 <= 0 || x0 >= W) return;
    if (x0 < 0) x0 = 0;
    if (x1 > W) x1 = W;
    if (x1 - x0 < 1e-3) x1 = Math.min(W, x0 + 1e-3); // an instant still shows
    var p = Math.floor(x0), pe = Math.min(W - 1, Math.ceil(x1) - 1);
    if (p >= pe) { acc[p * NSTATES + k] += x1 - x0; return; }
    acc[p * NSTATES + k] += p + 1 - x0;
    for (var q = p + 1; q < pe; q++) acc[q * NSTATES + k] += 1;
    acc[pe * NSTATES + k] += x1 - pe;
  }

  var painted = 0;
  function drawLane(l, y, scale) {
    var xa = Math.max(0, (l.start - v0) * scale), xb = Math.min(W, (l.end - v0) * scale);
    if (xb > xa) {
      ctx.fillStyle = ALIVE;
      ctx.fillRect(xa, y + 3, Math.max(1, xb - xa), ROW - 6);
    }
    acc.fill(0);
    var i = lowerBound(l.me, v0), n = l.ss.length;
    for (; i < n && l.ss[i] < v1; i++) cover(l.ss[i], l.se[i], l.st[i], scale);
    var j = lowerBound(l.ts, v0), m = l.ts.length;
    for (; j < m && l.ts[j] - sampleNs < v1; j++) cover(l.ts[j] - sampleNs, l.ts[j], 0, scale);
    // Each pixel shows the state that covers most of it, paler when it is mostly empty;
    // neighbouring pixels alike are one rectangle.
    var runK = -1, runA = 0, runX = 0;
    function flush(x) {
      if (runK >= 0 && x > runX) {
        ctx.globalAlpha = ALPHA[runA];
        ctx.fillStyle = STATES[runK].color;
        ctx.fillRect(runX, y + 3, x - runX, ROW - 6);
        painted++;
      }
    }
    for (var px = 0; px < W; px++) {
      var base = px * NSTATES, best = -1, bv = 0, tot = 0;
      for (var k = 0; k < NSTATES; k++) {
        var v = acc[base + k];
        if (v > 0) { tot += v; if (v > bv) { bv = v; best = k; } }
      }
      var a = best < 0 ? 0 : tot >= 0.95 ? 4 : 1 + Math.min(2, Math.floor(tot * 3));
      if (best !== runK || a !== runA) { flush(px); runK = best; runA = a; runX = px; }
    }
    flush(W);
    ctx.globalAlpha = 1;
  }

  function drawAxis() {
    actx.setTransform(dpr, 0, 0, dpr, 0, 0);
    actx.clearRect(0, 0, W, 24);
    var span = v1 - v0, raw = span * 110 / W;
    var pow = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = raw / pow, step = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * pow;
    actx.fillStyle = '#444';
    actx.strokeStyle = '#999';
    actx.font = '11px system-ui, sans-serif';
    actx.textBaseline = 'middle';
    for (var t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      var x = Math.round((t - v0) * W / span) + 0.5;
      actx.beginPath();
      actx.moveTo(x, 16);
      actx.lineTo(x, 24);
      actx.stroke();
      actx.fillText(fmtTick(t, step), x + 3, 9);
    }
    if (selection) {
      var xs = (Math.min(selection.a, selection.b) - v0) * W / span;
      var xe = (Math.max(selection.a, selection.b) - v0) * W / span;
      actx.fillStyle = 'rgba(31,119,180,0.25)';
      actx.fillRect(xs, 0, xe - xs, 24);
    }
  }

  var pending = false;
  function draw() {
    pending = false;
    var t0 = performance.now();
    var scale = W / (v1 - v0);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    painted = 0;
    // Only the rows in view are drawn; scrolling draws the others.
    var first = Math.max(0, Math.floor(scroll.scrollTop / ROW) - 1);
    var last = Math.min(rows.length, Math.ceil((scroll.scrollTop + scroll.clientHeight) / ROW) + 1);
    for (var r = first; r < last; r++) {
      var y = r * ROW;
      if (rows[r].proc) {
        ctx.fillStyle = '#eef1f5';
        ctx.fillRect(0, y, W, ROW);
      } else {
        drawLane(rows[r].lane, y, scale);
      }
    }
    if (selection) {
      ctx.fillStyle = 'rgba(31,119,180,0.2)';
      var xs = (Math.min(selection.a, selection.b) - v0) * scale;
      var xe = (Math.max(selection.a, selection.b) - v0) * scale;
      ctx.fillRect(xs, 0, xe - xs, H);
    }
    drawAxis();
    body.setAttribute('data-painted', painted);
    body.setAttribute('data-draw-ms', (performance.now() - t0).toFixed(1));
  }
  function redraw() {
    if (!pending) { pending = true; window.requestAnimationFrame(draw); }
  }

  var range = document.getElementById('range');
  function setView(a, b) {
    var len = Math.min(duration, Math.max(MIN_VIEW, b - a));
    a = Math.max(0, Math.min(a, duration - len));
    v0 = a;
    v1 = a + len;
    range.textContent = 'showing ' + fmt(v0) + ' \u2013 ' + fmt(v1) + ' (' + fmt(v1 - v0) +
      ' of ' + fmt(duration) + ')';
    body.setAttribute('data-view', Math.round(v0) + '-' + Math.round(v1));
    try {
      history.replaceState(null, '', '#view=' + Math.round(v0) + '-' + Math.round(v1));
    } catch (e) { /* a page opened from a file may not change its address */ }
    redraw();
  }
  function zoomAt(t, factor) {
    setView(t - (t - v0) * factor, t + (v1 - t) * factor);
  }

  function xTime(ev, target) {
    var rect = target.getBoundingClientRect();
    return v0 + (ev.clientX - rect.left) * (v1 - v0) / W;
  }

  // The span or sample under the pointer, within 3 pixels.
  function hit(ev) {
    var rect = canvas.getBoundingClientRect();
    var r = Math.floor((ev.clientY - rect.top) / ROW);
    var row = rows[r];
    if (!row || !row.lane) return null;
    return hitAt(row.lane, xTime(ev, canvas));
  }

  // The span or sample of lane l nearest to time t, within 3 pixels. A span without a stack
  // (a running stretch between two switches) gives way to a sample within reach, which has one.
  function hitAt(l, t) {
    var tol = 3 * (v1 - v0) / W;
    var best = null, bd = Infinity, i, d;
    function dist(s, e) { return t < s ? s - t : t > e ? t - e : 0; }
    for (i = lowerBound(l.me, t - tol); i < l.ss.length && l.ss[i] <= t + tol; i++) {
      d = dist(l.ss[i], l.se[i]);
      if (d > tol) continue;
      if (l.sk[i] === 0) d += 2 * tol;
      if (d < bd) { bd = d; best = { lane: l, span: i }; }
    }
    for (i = lowerBound(l.ts, t - tol); i < l.ts.length && l.ts[i] - sampleNs <= t + tol; i++) {
      d = dist(l.ts[i] - sampleNs, l.ts[i]);
      if (d <= tol && d < bd) { bd = d; best = { lane: l, sample: i }; }
    }
    return best;
  }

  function describe(h) {
    var l = h.lane, lines = [], ref;
    lines.push(visible(l.name) + ' (tid ' + l.tid + ') in ' + visible(l.proc.name) +
      ' (pid ' + l.proc.pid + ')');
    if (h.span !== undefined) {
      var i = h.span;
      lines.push(STATES[l.st[i]].label + ' at ' + fmt(l.ss[i]) + ' for ' + fmt(l.se[i] - l.ss[i]));
      ref = l.sk[i];
    } else {
      lines.push('on-CPU sample at ' + fmt(l.ts[h.sample]));
      ref = l.tk[h.sample];
    }
    var stack = stackFrames(ref);
    lines.push(stack.length ? 'stack, innermost first:' : 'no stack recorded');
    return { head: lines, stack: stack };
  }

  var tip = document.getElementById('tip');
  var stackEl = document.getElementById('stack');
  function showTip(ev, h) {
    if (!h) { tip.hidden = true; return; }
    var d = describe(h);
    tip.textContent = '';
    var pre = el('pre');
    var shown = d.stack.slice(0, 24).map(function (f) { return '  ' + visible(f); });
    if (d.stack.length > 24) shown.push('  \u2026 ' + (d.stack.length - 24) + ' more (click to see all)');
    pre.textContent = d.head.concat(shown).join('\n');
    tip.appendChild(pre);
    tip.hidden = false;
    var x = ev.clientX + 14, y = ev.clientY + 14;
    var w = tip.offsetWidth, hh = tip.offsetHeight;
    if (x + w > window.innerWidth) x = Math.max(0, ev.clientX - w - 14);
    if (y + hh > window.innerHeight) y = Math.max(0, ev.clientY - hh - 14);
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  }
  function pin(h) {
    if (!h) return;
    var d = describe(h);
    stackEl.textContent = d.head.concat(d.stack.map(function (f) { return '  ' + visible(f); }))
      .join('\n');
  }

  // Pointer: drag pans, shift+drag (or a drag on the axis) selects a range to zoom into,
  // a click without moving pins the stack.
  var drag = null, selection = null;
  function down(ev, onAxis) {
    if (ev.button !== 0) return;
    ev.preventDefault();
    var target = onAxis ? axis : canvas;
    drag = { x: ev.clientX, v0: v0, v1: v1, select: onAxis || ev.shiftKey, target: target,
      moved: false, event: ev };
    if (drag.select) selection = { a: xTime(ev, target), b: xTime(ev, target) };
    canvas.classList.add('dragging');
  }
  canvas.addEventListener('mousedown', function (ev) { down(ev, false); });
  axis.addEventListener('mousedown', function (ev) { down(ev, true); });
  window.addEventListener('mousemove', function (ev) {
    if (!drag) {
      if (ev.target === canvas) showTip(ev, hit(ev)); else tip.hidden = true;
      return;
    }
    if (Math.abs(ev.clientX - drag.x) > 2) drag.moved = true;
    if (drag.select) {
      selection.b = xTime(ev, drag.target);
      redraw();
    } else if (drag.moved) {
      var dt = (ev.clientX - drag.x) * (drag.v1 - drag.v0) / W;
      setView(drag.v0 - dt, drag.v1 - dt);
    }
    tip.hidden = true;
  });
  window.addEventListener('mouseup', function (ev) {
    if (!drag) return;
    var d = drag;
    drag = null;
    canvas.classList.remove('dragging');
    if (d.select && selection) {
      var a = Math.min(selection.a, selection.b), b = Math.max(selection.a, selection.b);
      selection = null;
      if (d.moved && b > a) setView(a, b); else redraw();
    }
    if (!d.moved && d.target === canvas) pin(hit(ev));
  });
  canvas.addEventListener('mouseleave', function () { tip.hidden = true; });
  function wheel(ev) {
    ev.preventDefault();
    var dy = ev.deltaY * (ev.deltaMode === 1 ? 30 : ev.deltaMode === 2 ? 300 : 1);
    if (Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) {
      var dt = ev.deltaX * (v1 - v0) / W;
      setView(v0 + dt, v1 + dt);
    } else {
      zoomAt(xTime(ev, ev.currentTarget), Math.exp(dy * 0.002));
    }
  }
  canvas.addEventListener('wheel', wheel, { passive: false });
  axis.addEventListener('wheel', wheel, { passive: false });
  window.addEventListener('keydown', function (ev) {
    var mid = (v0 + v1) / 2, step = (v1 - v0) / 5;
    if (ev.key === '+' || ev.key === '=') zoomAt(mid, 0.5);
    else if (ev.key === '-') zoomAt(mid, 2);
    else if (ev.key === 'ArrowLeft') setView(v0 - step, v1 - step);
    else if (ev.key === 'ArrowRight') setView(v0 + step, v1 + step);
    else if (ev.key === '0') setView(0, duration);
  });
  document.getElementById('reset').addEventListener('click', function () { setView(0, duration); });
  scroll.addEventListener('scroll', redraw);
  window.addEventListener('resize', function () { layout(); redraw(); });

  // The view in the address (#view=START-END, nanoseconds from the start of the recording).
  var start = 0, end = duration;
  // With &at=TID@TIME, the stack of that thread's block or sample at TIME is kept in the
  // Stack panel, as a click would.
  var m = /^#view=(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)(?:&at=(\d+)@(\d+(?:\.\d+)?))?$/
    .exec(window.location.hash);
  if (m && Number(m[2]) > Number(m[1])) { start = Number(m[1]); end = Number(m[2]); }
  layout();
  setView(start, end);
  if (m && m[3] !== undefined) {
    var tid = Number(m[3]);
    rows.forEach(function (row) {
      if (row.lane && row.lane.tid === tid) pin(hitAt(row.lane, Number(m[4])));
    });
  }
  draw();
  body.setAttribute('data-ready-ms', performance.now().toFixed(1));
})();
