#include "harness/report_html.h"

#include <algorithm>
#include <cstdio>

namespace rehearse {

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        if ((c < 0x20 && ch != '\t' && ch != '\n') || c == 0x7f) {
          out += "&#xFFFD;";
        } else {
          out += ch;
        }
    }
  }
  return out;
}

namespace {

using E = std::string;
E esc(std::string_view s) { return html_escape(s); }

E num(double v, const char* fmt = "%.1f") {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

E bytes_text(int64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? std::to_string(b) + " B" : num(v) + " " + units[u];
}

E rate_text(const StepReport& s) {
  if (s.per_second <= 0) return "";
  return num(s.per_second, "%.0f") + " " + s.rate_unit();
}

E signed_ms(int64_t ms) { return (ms < 0 ? "\xe2\x88\x92" : "+") + human_ms(ms < 0 ? -ms : ms); }

const char* kCss = R"css(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;
 color:#1d2330;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#5b6475}
.card{background:#fff;border:1px solid #dfe3ea;border-radius:8px;padding:16px;margin:12px 0}
.downtime{font-size:56px;font-weight:700;letter-spacing:-1px;color:#0b5cad;line-height:1.1}
.note{color:#8a5a00}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceff4;vertical-align:top}
th{font-weight:600;color:#5b6475}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.slower{color:#b3261e}.faster{color:#1b7f3a}
code{font:12px ui-monospace,Menlo,Consolas,monospace}
svg text{font:12px system-ui,-apple-system,Helvetica,Arial,sans-serif;fill:#1d2330}
svg .lbl{font-weight:600}
svg .inc{fill:#e8eef8;stroke:#9db3d6}
svg .inc.resumed{stroke:#c77700;stroke-dasharray:5 3;stroke-width:2}
svg .step{stroke:#fff;stroke-width:1}
svg .s0{fill:#3b7dd8}svg .s1{fill:#5fa8e8}svg .s2{fill:#2a9d8f}svg .s3{fill:#8ab17d}
svg .s4{fill:#e9c46a}svg .s5{fill:#f4a261}
svg .failmark{fill:#b3261e}
svg .steplbl{fill:#fff;font-size:11px}
svg .detail{fill:#5b6475;font-size:11px}
)css";

void timeline(E& h, const Report& r) {
  const int label_w = 150, bar_w = 820, row_h = 64, bar_h = 26, top = 8;
  const int width = label_w + bar_w + 20;
  const int height = top + row_h * static_cast<int>(r.increments.size()) + 8;
  const double total = static_cast<double>(std::max<int64_t>(r.total_ms, 1));
  auto x_of = [&](int64_t ms) {
    return label_w + static_cast<double>(ms) / total * static_cast<double>(bar_w);
  };
  h += "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"100%\" viewBox=\"0 0 " +
       std::to_string(width) + " " + std::to_string(height) +
       "\" role=\"img\" aria-label=\"timeline of the increments\">\n";
  int row = 0;
  for (const auto& inc : r.increments) {
    const int y = top + row * row_h;
    const double x0 = x_of(inc.offset_ms);
    const double w = std::max(2.0, x_of(inc.offset_ms + inc.duration_ms) - x0);
    h += "<g class=\"increment\" data-version=\"" + esc(inc.version) + "\" data-duration-ms=\"" +
         std::to_string(inc.duration_ms) + "\" data-resumed=\"" + (inc.resumed ? "1" : "0") +
         "\" data-failed-attempts=\"" + std::to_string(inc.failed_attempts) + "\">\n";
    h += "<title>" + esc(inc.version) + ": " + esc(human_ms(inc.duration_ms)) + "</title>\n";
    h += "<text class=\"lbl\" x=\"4\" y=\"" + std::to_string(y + 17) + "\">" + esc(inc.version) +
         "</text>";
    h += "<text x=\"4\" y=\"" + std::to_string(y + 33) + "\">" + esc(human_ms(inc.duration_ms)) +
         "</text>\n";
    h += "<rect class=\"inc" + std::string(inc.resumed ? " resumed" : "") + "\" x=\"" + num(x0) +
         "\" y=\"" + std::to_string(y) + "\" width=\"" + num(w) + "\" height=\"" +
         std::to_string(bar_h) + "\" rx=\"3\"/>\n";
    int i = 0;
    E details;
    for (const auto& s : inc.steps) {
      const double sx = x_of(inc.offset_ms + s.offset_ms);
      const double sw = std::max(1.0, x_of(inc.offset_ms + s.offset_ms + s.duration_ms) - sx);
      E label = s.step + " " + human_ms(s.duration_ms);
      E rate = rate_text(s);
      if (!rate.empty()) label += ", " + rate;
      if (s.resumed) label += ", resumed";
      if (s.failed_attempts > 0)
        label += ", failed " + std::to_string(s.failed_attempts) + "x before";
      h += "<rect class=\"step s" + std::to_string(i % 6) + "\" data-step=\"" + esc(s.step) +
           "\" data-duration-ms=\"" + std::to_string(s.duration_ms) + "\" x=\"" + num(sx) +
           "\" y=\"" + std::to_string(y + 2) + "\" width=\"" + num(sw) + "\" height=\"" +
           std::to_string(bar_h - 4) + "\"><title>" + esc(label) + "</title></rect>\n";
      // Inside the segment when it is wide enough (about 6.5 px a character).
      E inside = s.step + " " + human_ms(s.duration_ms);
      if (sw > 6.5 * static_cast<double>(inside.size()) + 8) {
        h += "<text class=\"steplbl\" x=\"" + num(sx + 4) + "\" y=\"" + std::to_string(y + 17) +
             "\">" + esc(inside) + "</text>\n";
      }
      if (s.failed_attempts > 0) {
        h += "<path class=\"failmark\" d=\"M" + num(sx) + " " + std::to_string(y) +
             " l8 0 l-8 8z\"/>\n";
      }
      if (!details.empty()) details += "  \xc2\xb7  ";
      details += label;
      ++i;
    }
    if (inc.resumed) details += "  (resumed after an interruption)";
    if (inc.failed_attempts > 0) {
      details += "  (" + std::to_string(inc.failed_attempts) + " failed attempt" +
                 (inc.failed_attempts > 1 ? "s" : "") + " before)";
    }
    h += "<text class=\"detail\" x=\"" + std::to_string(label_w) + "\" y=\"" +
         std::to_string(y + bar_h + 16) + "\">" + esc(details) + "</text>\n";
    h += "</g>\n";
    ++row;
  }
  h += "</svg>\n";
}

}  // namespace

std::string report_html(const Report& r) {
  E h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  h += "<title>rehearse report: " + esc(human_ms(r.total_ms)) + " estimated downtime</title>\n";
  h += "<style>" + std::string(kCss) + "</style>\n</head>\n<body>\n<main>\n";
  h += "<h1>Upgrade rehearsal</h1>\n<div class=\"sub\">" + esc(r.env.workspace) + " on " +
       esc(r.env.host) + ", generated " + esc(local_time(r.env.generated)) + "</div>\n";

  h += "<div class=\"card\"><div class=\"sub\">Estimated production downtime</div>\n";
  h += "<div class=\"downtime\" id=\"downtime\" data-ms=\"" + std::to_string(r.total_ms) + "\">" +
       esc(human_ms(r.total_ms)) + "</div>\n";
  h += "<div class=\"sub\">the step time of the last successful run of " +
       std::to_string(r.increments.size()) + " increment" + (r.increments.size() == 1 ? "" : "s") +
       "</div>\n";
  if (!r.never_run.empty()) {
    E list;
    for (const auto& v : r.never_run) list += (list.empty() ? "" : ", ") + v;
    h += "<div class=\"note\" id=\"never-run\">Not included, never run successfully: " + esc(list) +
         "</div>\n";
  }
  h += "</div>\n";

  h += "<h2>Timeline</h2>\n<div class=\"card\">\n";
  if (r.increments.empty()) {
    h += "<p>No increment has run successfully yet.</p>\n";
  } else {
    timeline(h, r);
  }
  h += "</div>\n";

  h += "<h2>Steps</h2>\n<div class=\"card\"><table id=\"steps\">\n<tr><th>Increment</th>"
       "<th>Step</th><th>Kind</th><th class=\"n\">Duration</th><th class=\"n\">Items</th>"
       "<th class=\"n\">Rate</th><th>Marks</th><th>Checksum</th></tr>\n";
  for (const auto& inc : r.increments) {
    for (const auto& s : inc.steps) {
      E marks;
      if (s.resumed) marks += "resumed ";
      if (s.failed_attempts > 0)
        marks += "failed " + std::to_string(s.failed_attempts) + "x before ";
      if (s.checksum_changed) marks += "edited since ";
      h += "<tr><td>" + esc(inc.version) + "</td><td>" + esc(s.step) + "</td><td>" + esc(s.kind) +
           "</td><td class=\"n\">" + esc(human_ms(s.duration_ms)) + "</td><td class=\"n\">" +
           std::to_string(s.items) + "</td><td class=\"n\">" + esc(rate_text(s)) + "</td><td>" +
           esc(marks) + "</td><td><code>" + esc(s.checksum) + "</code></td></tr>\n";
    }
  }
  h += "</table></div>\n";

  h += "<h2>Changes per increment</h2>\n<div class=\"card\"><table id=\"changes\">\n"
       "<tr><th>Increment</th><th class=\"n\">Added</th><th class=\"n\">Changed</th>"
       "<th class=\"n\">Deleted</th><th class=\"n\">Renamed</th><th class=\"n\">Bytes added</th>"
       "<th class=\"n\">Bytes changed</th><th class=\"n\">In the store</th></tr>\n";
  for (const auto& inc : r.increments) {
    h += "<tr data-version=\"" + esc(inc.version) + "\"><td>" + esc(inc.version) + "</td>";
    if (!inc.diff) {
      h += "<td colspan=\"7\" class=\"sub\">not available (its checkpoint is no longer applied)"
           "</td></tr>\n";
      continue;
    }
    const auto& d = *inc.diff;
    h += "<td class=\"n\">" + std::to_string(d.added) + "</td><td class=\"n\">" +
         std::to_string(d.changed) + "</td><td class=\"n\">" + std::to_string(d.deleted) +
         "</td><td class=\"n\">" + std::to_string(d.renamed) + "</td><td class=\"n\">" +
         esc(bytes_text(d.added_bytes)) + "</td><td class=\"n\">" +
         esc(bytes_text(d.changed_bytes)) + "</td><td class=\"n\">" + esc(bytes_text(d.bytes)) +
         "</td></tr>\n";
  }
  h += "</table></div>\n";

  if (r.compare) {
    const auto& c = *r.compare;
    h += "<h2>Compared with run #" + std::to_string(c.run_id) +
         "</h2>\n<div class=\"card\"><table id=\"compare\">\n<tr><th>Increment</th>"
         "<th class=\"n\">This report</th><th class=\"n\">Run #" +
         std::to_string(c.run_id) +
         "</th><th class=\"n\">Difference</th><th>Snapshot</th><th>Snapshot then</th></tr>\n";
    for (const auto& row : c.rows) {
      E diff, cls;
      if (row.ms && row.other_ms) {
        int64_t d = *row.ms - *row.other_ms;
        diff = signed_ms(d);
        cls = d > 0 ? "slower" : d < 0 ? "faster" : "";
      }
      h += "<tr data-version=\"" + esc(row.version) + "\"><td>" + esc(row.version) +
           "</td><td class=\"n\">" + (row.ms ? esc(human_ms(*row.ms)) : E("-")) +
           "</td><td class=\"n\">" + (row.other_ms ? esc(human_ms(*row.other_ms)) : E("-")) +
           "</td><td class=\"n " + cls + "\">" + esc(diff) + "</td><td>" + esc(row.snapshot) +
           "</td><td>" + esc(row.other_snapshot) + "</td></tr>\n";
    }
    h += "<tr><th>Total</th><th class=\"n\">" + esc(human_ms(c.total_ms)) +
         "</th><th class=\"n\">" + esc(human_ms(c.other_total_ms)) + "</th><th class=\"n\">" +
         esc(signed_ms(c.total_ms - c.other_total_ms)) + "</th><th></th><th></th></tr>\n";
    h += "</table></div>\n";
  }

  h += "<h2>History</h2>\n<div class=\"card\"><table id=\"history\">\n<tr><th>Run</th>"
       "<th>Started</th><th>Command</th><th>Outcome</th><th class=\"n\">Duration</th>"
       "<th>Error</th></tr>\n";
  for (auto it = r.history.rbegin(); it != r.history.rend(); ++it) {
    const auto& run = *it;
    E dur = run.finished ? human_ms(static_cast<int64_t>((*run.finished - run.started) * 1000))
                         : E("-");
    h += "<tr data-run=\"" + std::to_string(run.id) + "\"><td>#" + std::to_string(run.id) +
         "</td><td>" + esc(local_time(run.started)) + "</td><td><code>" + esc(run.command) +
         "</code></td><td>" + esc(run.outcome) + (run.in_place ? " (in place)" : "") +
         "</td><td class=\"n\">" + esc(dur) + "</td><td>" + esc(run.error) + "</td></tr>\n";
  }
  h += "</table></div>\n";

  h += "<h2>Environment</h2>\n<div class=\"card\"><table id=\"environment\">\n";
  auto row = [&](const E& k, const E& v) {
    h += "<tr><th>" + esc(k) + "</th><td>" + esc(v) + "</td></tr>\n";
  };
  row("Host", r.env.host);
  row("Mirror (top lower)", r.env.lowers.empty() ? E() : r.env.lowers.front());
  for (size_t i = 1; i < r.env.lowers.size(); ++i)
    row("Lower " + std::to_string(i + 1), r.env.lowers[i]);
  row("Mirror refreshed",
      r.env.refreshed ? local_time(*r.env.refreshed) : E("not recorded (use rehearse refresh)"));
  if (!r.env.snapshot.empty()) row("Snapshot", r.env.snapshot);
  row("Mountpoint", r.env.mountpoint);
  row("Steps", r.env.steps);
  row("rehearse", r.env.rehearse_version);
  h += "</table></div>\n</main>\n</body>\n</html>\n";
  return h;
}

}  // namespace rehearse
