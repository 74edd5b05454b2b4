// The report as one self-contained HTML page (`rehearse report --html FILE`):
// inline CSS and SVG, no script, no external resource, so it opens from a
// mail attachment. Every string from the journal, the steps or the host is
// escaped (html_escape), so a step named "<script>" shows as text.
//
// Elements the browser test relies on: one `g.increment[data-version]` per
// increment in the timeline SVG (its steps are `rect.step[data-step]`
// inside), and `#downtime[data-ms]` holding the total.
#pragma once

#include <string>
#include <string_view>

#include "harness/report.h"

namespace rehearse {

// Text for HTML content and attribute values (quoted with "): & < > " '
// become entities; control characters other than tab and newline, which
// HTML does not allow, become U+FFFD.
std::string html_escape(std::string_view s);

std::string report_html(const Report& r);

}  // namespace rehearse
