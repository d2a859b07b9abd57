// The report as one self-contained HTML page: inline CSS, plots drawn here as inline SVG, no script, no network.
// Every number shown is tied to its place in Report::to_json() by data-j (a JSON pointer) and data-s (the scale
// it is shown in, 100 for percent), so that a test can check the page against the JSON output.
#pragma once
#include <string>
#include <string_view>

#include "report/tables.h"

namespace ctrust {

// Text for HTML element content and attribute values: & < > " ' escaped; control characters other than tab and
// newline shown as U+FFFD (they are not allowed in HTML).
std::string html_escape(std::string_view s);

std::string render_html(const Report& r);

}  // namespace ctrust
