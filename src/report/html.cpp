#include "report/html.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

namespace ctrust {

std::string html_escape(std::string_view s) {
  std::string o;
  o.reserve(s.size() + 16);
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default:
        if ((unsigned char)c < 0x20 && c != '\n' && c != '\t') o += "\xEF\xBF\xBD";
        else if (c == 0x7f) o += "\xEF\xBF\xBD";
        else o += c;
    }
  }
  return o;
}

namespace {

using nlohmann::json;

constexpr const char* kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                    "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
const char* color(size_t i) { return kPalette[i % (sizeof kPalette / sizeof *kPalette)]; }

std::string esc(std::string_view s) { return html_escape(s); }

// A fixed-point number; a value that rounds to zero is shown as 0 (not -0).
std::string fixed(double x, int dec) {
  std::string s = fmt::format("{:.{}f}", x, dec);
  if (s[0] == '-' && s.find_first_not_of("-0.") == std::string::npos) s.erase(0, 1);
  return s;
}

// A number tied to the JSON output: data-j = its JSON pointer, data-s = the factor it is shown with.
std::string v(const std::string& ptr, double x, int dec, double scale = 1) {
  if (!std::isfinite(x)) return "<span class=\"na\">-</span>";  // NaN / inf are null in the JSON
  return fmt::format("<span class=\"v\" data-j=\"{}\" data-s=\"{}\">{}</span>", esc(ptr), scale == 1 ? "1" : "100",
                     fixed(x * scale, dec));
}
// An estimate "value [low, high]" whose JSON object is at ptr (value, ci_low, ci_high).
std::string est(const std::string& ptr, const Estimate& e, int dec, double scale = 1, bool sign = false) {
  std::string val = v(ptr + "/value", e.value, dec, scale);
  if (sign && e.value * scale >= 0.5 * std::pow(10.0, -dec)) val = "+" + val;
  return fmt::format("{} <span class=\"ci\">[{}, {}]</span>", val, v(ptr + "/ci_low", e.low, dec, scale),
                     v(ptr + "/ci_high", e.high, dec, scale));
}

constexpr const char* kCss = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px auto;max-width:1180px;
color:#1d1d1f;padding:0 16px;line-height:1.4}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em}
th,td{border:1px solid #d8d8d8;padding:3px 7px;vertical-align:top}
th{background:#f3f4f6;text-align:left}td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.ci{color:#666;font-size:.92em}td .ci{display:block}.sig{background:#fde8e8}.better{background:#e6f4ea}
.muted{color:#666}.note{color:#8a4b00}pre{background:#f6f8fa;padding:8px;overflow-x:auto;font-size:.8em;margin:.3em 0}
svg{background:#fff;border:1px solid #e2e2e2;margin:4px 8px 4px 0}svg text{font-size:11px;fill:#333}
.plots{display:flex;flex-wrap:wrap}details{margin:.4em 0}
)";

// ---------------------------------------------------------------- plots
struct Axis {
  double lo, hi;
  double px0, px1;  // pixel range
  double map(double x) const { return hi > lo ? px0 + (x - lo) / (hi - lo) * (px1 - px0) : (px0 + px1) / 2; }
};

// "Nice" ticks over [lo, hi].
std::vector<double> ticks(double lo, double hi, int want = 5) {
  std::vector<double> t;
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / want, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  for (double x = std::ceil(lo / step) * step; x <= hi + step * 1e-9; x += step) t.push_back(std::abs(x) < step * 1e-9 ? 0 : x);
  return t;
}
std::string tick_label(double x) {
  std::string s = fmt::format("{:.6g}", x);
  return s;
}

// A marker by method: circle, square, triangle, diamond, cross.
std::string marker(const std::string& method, double x, double y, const char* fill) {
  const double r = 5;
  if (method == "gptq")
    return fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>", x - r, y - r, 2 * r,
                       2 * r, fill);
  if (method == "awq")
    return fmt::format("<path d=\"M{:.1f},{:.1f}L{:.1f},{:.1f}L{:.1f},{:.1f}Z\" fill=\"{}\"/>", x, y - r - 1, x + r + 1,
                       y + r, x - r - 1, y + r, fill);
  if (method == "smoothquant")
    return fmt::format("<path d=\"M{:.1f},{:.1f}L{:.1f},{:.1f}L{:.1f},{:.1f}L{:.1f},{:.1f}Z\" fill=\"{}\"/>", x,
                       y - r - 1, x + r + 1, y, x, y + r + 1, x - r - 1, y, fill);
  if (method == "llm_int8")
    return fmt::format("<path d=\"M{:.1f},{:.1f}L{:.1f},{:.1f}M{:.1f},{:.1f}L{:.1f},{:.1f}\" stroke=\"{}\" "
                       "stroke-width=\"2.5\"/>", x - r, y - r, x + r, y + r, x - r, y + r, x + r, y - r, fill);
  return fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{}\" fill=\"{}\"/>", x, y, r, fill);
}

// One panel of the bits plot: y = flips (percent) or KL (nats) with 95% intervals, per variant and task.
std::string bits_panel(const Report& r, bool kl, const std::vector<std::string>& tasks) {
  const double W = 540, H = 330, L = 62, R = 16, T = 28, B = 46;
  double xlo = 1e9, xhi = -1e9, yhi = 0;
  for (const BitsPoint& p : r.bits_points) {
    if (kl && !p.has_kl) continue;
    xlo = std::min(xlo, p.bits);
    xhi = std::max(xhi, p.bits);
    const Estimate& e = kl ? p.kl : p.flips;
    yhi = std::max(yhi, (kl ? 1.0 : 100.0) * std::max(e.high, e.value));
  }
  if (xlo > xhi) xlo = xhi = 4;
  if (yhi <= 0) yhi = kl ? 0.01 : 1;
  Axis ax{xlo - 0.75, xhi + 0.75, L, W - R}, ay{0, yhi * 1.08, H - B, T};
  std::string o = fmt::format(
      "<svg class=\"plot\" id=\"plot-bits-{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"{} against weight bits\">",
      kl ? "kl" : "flips", W, H, W, H, kl ? "KL" : "flips");
  o += fmt::format("<text x=\"{}\" y=\"16\" font-weight=\"bold\">{}</text>", L,
                   kl ? "mean answer-level KL(base‖variant), nats, 95% CI" : "flips (% of items), 95% CI");
  for (double t : ticks(ay.lo, ay.hi)) {
    const double y = ay.map(t);
    o += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#eee\"/>", L, W - R, y, y);
    o += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>", L - 5, y + 4, tick_label(t));
  }
  for (double b = std::ceil(ax.lo); b <= ax.hi; b += 1) {
    const double x = ax.map(b);
    o += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/>", x, x, H - B, H - B + 5);
    o += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>", x, H - B + 18, b);
  }
  o += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/>", L, W - R, H - B, H - B);
  o += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/>", L, L, T, H - B);
  o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">weight bits (from the recipe)</text>", (L + W - R) / 2,
                   H - 8);
  for (size_t k = 0; k < r.bits_points.size(); ++k) {
    const BitsPoint& p = r.bits_points[k];
    if (kl && !p.has_kl) continue;
    const size_t ti = size_t(std::find(tasks.begin(), tasks.end(), p.task) - tasks.begin());
    const double jitter = (double(ti) - (double(tasks.size()) - 1) / 2) * 0.12;
    const Estimate& e = kl ? p.kl : p.flips;
    const double s = kl ? 1 : 100;
    const double x = ax.map(p.bits + jitter);
    o += fmt::format("<g class=\"mark\" data-j=\"/bits_plot/points/{}/{}\">", k, kl ? "kl" : "flips");
    o += fmt::format("<title>{} ({}), {}: {} {} [{}, {}]</title>", esc(r.runs[p.run].name), esc(r.runs[p.run].recipe_label),
                     esc(p.task), kl ? "KL" : "flips %", fixed(e.value * s, kl ? 5 : 2), fixed(e.low * s, kl ? 5 : 2),
                     fixed(e.high * s, kl ? 5 : 2));
    o += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"1.5\"/>",
                     x, x, ay.map(e.low * s), ay.map(e.high * s), color(ti));
    o += marker(p.method, x, ay.map(e.value * s), color(ti));
    o += "</g>";
  }
  o += "</svg>";
  return o;
}

std::string bits_section(const Report& r) {
  std::vector<std::string> tasks, methods;
  for (const BitsPoint& p : r.bits_points) {
    if (std::find(tasks.begin(), tasks.end(), p.task) == tasks.end()) tasks.push_back(p.task);
    if (std::find(methods.begin(), methods.end(), p.method) == methods.end()) methods.push_back(p.method);
  }
  std::string o = "<h2 id=\"bits\">Flips and KL against weight bits</h2>\n<div class=\"plots\">";
  o += bits_panel(r, false, tasks);
  o += bits_panel(r, true, tasks);
  o += "</div>\n<p>Colour = task: ";
  for (size_t i = 0; i < tasks.size(); ++i)
    o += fmt::format("<span style=\"color:{}\">■ {}</span> ", color(i), esc(tasks[i]));
  o += "&nbsp; Marker = method: ";
  for (const std::string& m : methods) {
    o += fmt::format("<svg width=\"14\" height=\"14\" viewBox=\"0 0 14 14\" style=\"border:0;margin:0;vertical-align:middle\">"
                     "{}</svg> {} ", marker(m, 7, 7, "#444"), esc(m));
  }
  o += "<br><span class=\"muted\">One point per variant and task (tasks side by side around each bit width); bars: "
       "95% bootstrap intervals. Bits: the recipe's weight bits (8 for SmoothQuant W8A8 and LLM.int8()); "
       "pruned variants have no bit width and are not plotted.</span></p>\n";
  return o;
}

std::string hist_svg(const Report& r, size_t k) {
  const KlHistogram& h = r.kl_hist[k];
  const double W = 540, H = 240, L = 48, R = 12, T = 28, B = 50;
  int64_t cmax = 1;
  for (int64_t c : h.counts) cmax = std::max(cmax, c);
  const size_t nb = h.counts.size();
  Axis ay{0, double(cmax) * 1.1, H - B, T};
  const double bw = (W - L - R) / double(nb);
  std::string o = fmt::format(
      "<svg class=\"plot\" id=\"plot-kl-hist-{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "viewBox=\"0 0 {} {}\" role=\"img\" aria-label=\"per-item KL histogram\">",
      k, W, H, W, H);
  o += fmt::format("<text x=\"{}\" y=\"16\" font-weight=\"bold\">{} ({}): per-item KL(base‖variant), {} items</text>",
                   L, esc(r.runs[h.run].name), esc(r.runs[h.run].recipe_label), h.n);
  for (double t : ticks(0, ay.hi, 4)) {
    if (t != std::floor(t)) continue;
    const double y = ay.map(t);
    o += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#eee\"/>", L, W - R, y, y);
    o += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>", L - 5, y + 4, tick_label(t));
  }
  auto edge = [](double e) {
    if (e == 0) return std::string("0");
    if (!std::isfinite(e)) return std::string("∞");
    const double l = std::log10(e);
    return std::abs(l - std::round(l)) < 1e-9 ? fmt::format("1e{}", int(std::round(l))) : fmt::format("{:.1e}", e);
  };
  for (size_t b = 0; b < nb; ++b) {
    const double x = L + double(b) * bw, y = ay.map(double(h.counts[b]));
    // An empty bin draws nothing (a mark is something drawn: the browser test checks each has a size).
    o += fmt::format("<g{}><title>[{}, {}): {} items</title>", h.counts[b] > 0 ? " class=\"mark\"" : "",
                     edge(h.edges[b]), edge(h.edges[b + 1]), h.counts[b]);
    o += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\"/>", x + 1, y, bw - 2,
                     (H - B) - y, color(h.run));
    o += "</g>";
    if (b % 2 == 0 || b + 1 == nb)
      o += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>", x, H - B + 14, edge(h.edges[b]));
  }
  o += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"#999\"/>", L, W - R, H - B, H - B);
  o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">KL (nats), half-decade bins; bar height = items</text>",
                   (L + W - R) / 2, H - 10);
  o += "</svg>";
  return o;
}

// The eight perspectives: one row per perspective, one dot with its 95% interval per run.
std::string trust_svg(const Report& r) {
  const TrustReport& t = *r.trust;
  const double W = 760, rowh = 22, T = 30, B = 40, L = 150, R = 20;
  const double H = T + B + rowh * double(t.columns.size());
  Axis ax{0, 100, L, W - R};
  std::string o = fmt::format(
      "<svg class=\"plot\" id=\"plot-trust\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{:.0f}\" "
      "viewBox=\"0 0 {} {:.0f}\" role=\"img\" aria-label=\"trust scores with 95% intervals\">",
      W, H, W, H);
  o += fmt::format("<text x=\"{}\" y=\"16\" font-weight=\"bold\">score (0-100, higher = more trustworthy), 95% CI</text>", L);
  for (int x = 0; x <= 100; x += 20) {
    const double px = ax.map(x);
    o += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{}\" y2=\"{:.0f}\" stroke=\"#eee\"/>", px, px, T, H - B);
    o += fmt::format("<text x=\"{:.1f}\" y=\"{:.0f}\" text-anchor=\"middle\">{}</text>", px, H - B + 16, x);
  }
  const size_t nr = t.rows.size();
  for (size_t c = 0; c < t.columns.size(); ++c) {
    const std::string& p = t.columns[c];
    const double y0 = T + rowh * double(c);
    o += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>", L - 8, y0 + rowh / 2 + 4, esc(p));
    for (size_t i = 0; i < nr; ++i) {
      auto it = t.rows[i].cells.find(p);
      if (it == t.rows[i].cells.end() || it->second.score < 0) continue;
      const TrustReportCell& cell = it->second;
      const double y = y0 + rowh * (double(i) + 1) / double(nr + 1);
      const size_t ri = r.trust_rows[i];
      o += fmt::format("<g class=\"mark\" data-j=\"/trust/runs/{}/scores/{}\"><title>{}: {} {}{}</title>", i, esc(p),
                       esc(r.runs[ri].name), esc(p), fixed(cell.score, 2),
                       cell.has_ci ? fmt::format(" [{}, {}]", fixed(cell.ci_low, 2), fixed(cell.ci_high, 2))
                                   : std::string(" (stored score, no interval)"));
      if (cell.has_ci)
        o += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"2\"/>",
                         ax.map(cell.ci_low), ax.map(cell.ci_high), y, y, color(ri));
      o += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\"/></g>", ax.map(cell.score), y, color(ri));
    }
  }
  o += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.0f}\" y2=\"{:.0f}\" stroke=\"#999\"/>", L, W - R, H - B, H - B);
  double lx = L;
  for (size_t i = 0; i < nr; ++i) {
    const size_t ri = r.trust_rows[i];
    o += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.0f}\" r=\"4\" fill=\"{}\"/><text x=\"{:.1f}\" y=\"{:.0f}\">{}</text>",
                     lx, H - 10, color(ri), lx + 8, H - 6, esc(r.runs[ri].name));
    lx += 24 + 7 * double(std::min<size_t>(r.runs[ri].name.size(), 30));
  }
  o += "</svg>";
  return o;
}

// ---------------------------------------------------------------- sections
std::string runs_section(const Report& r) {
  std::string o = "<h2 id=\"runs\">Runs and recipes</h2>\n<table><tr><th>#</th><th>run</th><th>model</th><th>compute</th>"
                  "<th>evaluation runs (id: task, items)</th><th>trust run</th><th>recipe</th><th>weight bits</th></tr>\n";
  for (size_t i = 0; i < r.runs.size(); ++i) {
    const ReportRun& x = r.runs[i];
    std::string ev;
    for (const RunInfo& e : x.eval) ev += fmt::format("{}{}: {}, {}", ev.empty() ? "" : "<br>", e.id, esc(e.task), e.n_items);
    o += fmt::format("<tr><td>{}</td><td><span style=\"color:{}\">●</span> {}{}</td><td>{}</td><td>{}</td><td>{}</td>"
                     "<td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>\n",
                     i, i == 0 ? "#444" : color(i), esc(x.name), i == 0 ? " <b>(base)</b>" : "", esc(x.model_path),
                     esc(x.compute), ev.empty() ? "-" : ev, x.trust ? std::to_string(x.trust->id) : "-",
                     esc(x.recipe_label), x.bits >= 0 ? v(fmt::format("/runs/{}/bits", i), x.bits, 0) : "-");
  }
  o += "</table>\n";
  for (size_t i = 0; i < r.runs.size(); ++i) {
    const ReportRun& x = r.runs[i];
    if (x.recipe.empty()) continue;
    const json j = json::parse(x.recipe, nullptr, false);
    const std::string text = j.is_discarded() ? x.recipe : j.dump(2, ' ', false, json::error_handler_t::replace);
    o += fmt::format("<details{}><summary>recipe of {} ({})</summary><pre>{}</pre></details>\n", i == 1 ? " open" : "",
                     esc(x.name), esc(x.recipe_label), esc(text));
  }
  return o;
}

std::string eval_section(const Report& r) {
  std::string o = "<h2 id=\"eval\">Accuracy, flips and KL per task (against the base)</h2>\n";
  if (r.eval.empty()) return o + "<p class=\"muted\">No evaluation task in common with the base.</p>\n";
  const std::string& base = r.runs[0].name;
  o += fmt::format("<table><tr><th>task</th><th>variant</th><th>n</th><th>acc {} % [95% CI]</th><th>acc variant % "
                   "[95% CI]</th><th>Δacc % [95% CI]</th><th>c2w</th><th>w2c</th><th>flips % [95% CI]</th>"
                   "<th>KL(base‖variant) [95% CI]</th><th>McNemar p</th><th>ppl base / variant</th></tr>\n",
                   esc(base));
  for (size_t k = 0; k < r.eval.size(); ++k) {
    const EvalRow& e = r.eval[k];
    const std::string p = fmt::format("/eval/{}", k);
    const bool worse = e.delta_acc.high < 0, better = e.delta_acc.low > 0;
    o += fmt::format(
        "<tr><td>{}</td><td><span style=\"color:{}\">●</span> {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>"
        "<td class=\"n\">{}</td><td class=\"n{}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>"
        "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
        esc(e.task), color(e.run), esc(r.runs[e.run].name), v(p + "/n", double(e.n), 0),
        est(p + "/acc_base", e.acc_base, 2, 100), est(p + "/acc", e.acc, 2, 100),
        worse ? " sig" : better ? " better" : "", est(p + "/delta_acc", e.delta_acc, 2, 100, true),
        v(p + "/c2w", double(e.c2w), 0), v(p + "/w2c", double(e.w2c), 0), est(p + "/flips", e.flips, 2, 100),
        e.has_kl ? est(p + "/kl", e.kl, 5) : "- (likelihood task)", v(p + "/mcnemar_p", e.mcnemar_p, 4),
        e.ppl_base >= 0 ? v(p + "/ppl_base", e.ppl_base, 3) + " / " + (e.ppl >= 0 ? v(p + "/ppl", e.ppl, 3) : "-")
                        : "-");
  }
  o += "</table>\n<p class=\"muted\">n: items in both runs. Accuracy intervals: Wilson score; Δacc, flips and KL: "
       "percentile bootstrap over items (" + std::to_string(r.bootstrap) +
       " resamples, seeded). Δacc red: the interval is below 0; green: above 0. Flips: items whose correctness "
       "changed ((c2w + w2c) / n). KL: mean over items of KL between the softmaxes of the choices' "
       "log-likelihoods. McNemar: exact two-sided p of c2w against w2c.</p>\n";
  return o;
}

std::string hist_section(const Report& r) {
  std::string o = "<h2 id=\"kl\">Distribution of per-item KL</h2>\n<div class=\"plots\">";
  for (size_t k = 0; k < r.kl_hist.size(); ++k) o += hist_svg(r, k);
  o += "</div>\n<table><tr><th>variant</th><th>items</th><th>mean</th><th>median</th><th>95th percentile</th>"
       "<th>max</th></tr>\n";
  for (size_t k = 0; k < r.kl_hist.size(); ++k) {
    const KlHistogram& h = r.kl_hist[k];
    const std::string p = fmt::format("/kl_hist/{}", k);
    o += fmt::format("<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>"
                     "<td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
                     esc(r.runs[h.run].name), v(p + "/n", double(h.n), 0), v(p + "/mean", h.mean, 5),
                     v(p + "/median", h.median, 5), v(p + "/p95", h.p95, 5), v(p + "/max", h.max, 5));
  }
  o += "</table>\n<p class=\"muted\">Answer-level KL(base‖variant) of each item of the variant's multiple-choice "
       "tasks (all tasks pooled), on fixed half-decade bins shared by every variant.</p>\n";
  return o;
}

std::string trust_section(const Report& r) {
  const TrustReport& t = *r.trust;
  std::string o = "<h2 id=\"trust\">Trust perspectives (DecodingTrust)</h2>\n";
  o += trust_svg(r);
  o += "\n<table><tr><th>run</th>";
  for (const std::string& p : t.columns) o += "<th>" + esc(p) + "</th>";
  o += "</tr>\n";
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const TrustReportRow& row = t.rows[i];
    o += fmt::format("<tr><td><span style=\"color:{}\">●</span> {}{}</td>", color(r.trust_rows[i]),
                     esc(r.runs[r.trust_rows[i]].name), i == 0 ? " <b>(base)</b>" : "");
    for (const std::string& p : t.columns) {
      auto it = row.cells.find(p);
      if (it == row.cells.end() || it->second.score < 0) {
        o += "<td class=\"n\">-</td>";
        continue;
      }
      const TrustReportCell& c = it->second;
      const std::string jp = fmt::format("/trust/runs/{}", i);
      std::string cell = v(jp + "/scores/" + p, c.score, 2);
      cell += c.has_ci ? fmt::format(" <span class=\"ci\">[{}, {}]</span>", v(jp + "/ci/" + p + "/ci_low", c.ci_low, 2),
                                     v(jp + "/ci/" + p + "/ci_high", c.ci_high, 2))
                       : std::string(" <span class=\"ci\">(stored)</span>");
      std::string cls = "n";
      if (c.paired) {
        const PairedDelta& d = *c.paired;
        cell += fmt::format("<br>Δ {}{} <span class=\"ci\">[{}, {}], {} items</span>", d.delta > 0 ? "+" : "",
                            v(jp + "/paired/" + p + "/delta", d.delta, 2), v(jp + "/paired/" + p + "/ci_low", d.ci.low, 2),
                            v(jp + "/paired/" + p + "/ci_high", d.ci.high, 2), d.items);
        if (d.ci.high < 0) cls += " sig";
        else if (d.ci.low > 0) cls += " better";
      } else if (i > 0) {
        auto i0 = t.rows[0].cells.find(p);
        if (i0 != t.rows[0].cells.end() && i0->second.score >= 0)
          cell += fmt::format("<br>Δ {} <span class=\"ci\">(unpaired)</span>",
                              v(jp + "/delta/" + p, c.score - i0->second.score, 2));
      }
      o += "<td class=\"" + cls + "\">" + cell + "</td>";
    }
    o += "</tr>\n";
  }
  o += "</table>\n<p class=\"muted\">Scores 0-100, higher = more trustworthy; [ ]: 95% bootstrap interval over items "
       "(" + std::to_string(t.bootstrap) + " replicates); Δ: paired difference from the base on the items both runs "
       "have, with its paired bootstrap interval (red: below 0, green: above 0); (stored): the stored score, which "
       "could not be re-scored from its records. The same table as <code>ctrust trust-report</code>.</p>\n";
  return o;
}

}  // namespace

std::string render_html(const Report& r) {
  std::string o = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                  "<link rel=\"icon\" href=\"data:,\">";
  std::string names;
  for (const ReportRun& x : r.runs) names += (names.empty() ? "" : ", ") + x.name;
  o += "<title>ctrust report: " + esc(names) + "</title><style>" + kCss + "</style></head>\n<body>\n";
  o += "<h1>ctrust report</h1>\n<p class=\"muted\">Base <b>" + esc(r.runs[0].name) + "</b>; " +
       std::to_string(r.runs.size() - 1) + " variant(s); results store " + esc(r.db) + "; ctrust " CTRUST_VERSION
       ". Every figure is computed item by item from the stored runs (<code>ctrust report --json</code> prints the "
       "same data).</p>\n";
  o += runs_section(r);
  o += eval_section(r);
  if (r.bits_plot) o += bits_section(r);
  if (!r.kl_hist.empty()) o += hist_section(r);
  if (r.trust) o += trust_section(r);
  if (!r.notes.empty()) {
    o += "<h2 id=\"notes\">Notes</h2>\n<ul>";
    for (const std::string& n : r.notes) o += "<li class=\"note\">" + esc(n) + "</li>";
    o += "</ul>\n";
  }
  o += "</body></html>\n";
  return o;
}

}  // namespace ctrust
