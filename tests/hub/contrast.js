// Run in the page by tests/hub/test_contrast.py: [text, ratio, tag.class] per element with
// its own visible text (WCAG 2 contrast; opacity and translucent backgrounds composited).
() => {
  const parse = (c) => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return [0,0,0,0];
    const p = m[1].split(',').map((x) => parseFloat(x)); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const over = (top, bottom) => { const a = top[3] + bottom[3] * (1 - top[3]);
    if (a === 0) return [0,0,0,0];
    return [0,1,2].map((i) => (top[i]*top[3] + bottom[i]*bottom[3]*(1-top[3])) / a).concat([a]); };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v/12.92 : Math.pow((v+0.055)/1.055, 2.4); };
    return 0.2126*f(c[0]) + 0.7152*f(c[1]) + 0.0722*f(c[2]); };
  const background = (el) => { const chain = []; for (let e = el; e; e = e.parentElement) chain.push(e);
    let bg = [255,255,255,1];  // the canvas
    for (const e of chain.reverse()) { const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) bg = over(c, bg); }
    return bg; };
  const opacity = (el) => { let o = 1; for (let e = el; e; e = e.parentElement) o *= parseFloat(getComputedStyle(e).opacity); return o; };
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    if (['SCRIPT','STYLE','TEMPLATE','IMG','OPTION'].includes(el.tagName)) continue;
    const own = [...el.childNodes].filter((n) => n.nodeType === 3 && n.textContent.trim()).map((n) => n.textContent.trim()).join(' ');
    if (!own) continue;
    const r = el.getBoundingClientRect(); const st = getComputedStyle(el);
    if (r.width === 0 || r.height === 0 || st.visibility === 'hidden' || el.closest('[hidden]')) continue;
    const bg = background(el); const fg0 = parse(st.color);
    const fg = over([fg0[0], fg0[1], fg0[2], fg0[3] * opacity(el)], bg);
    const L1 = lum(fg), L2 = lum(bg);
    const ratio = (Math.max(L1, L2) + 0.05) / (Math.min(L1, L2) + 0.05);
    out.push([own.slice(0, 50), Math.round(ratio * 100) / 100, el.tagName + '.' + el.className]);
  }
  return out;
}
