// Version: a dotted version number of an upgrade increment ("1.9" < "1.10"
// < "2.0"), compared numerically component by component.
#pragma once

#include <compare>
#include <optional>
#include <string>
#include <vector>

namespace rehearse {

class Version {
 public:
  // Returns nullopt unless text is one or more dot-separated decimal numbers.
  static std::optional<Version> parse(const std::string& text);

  const std::vector<unsigned long long>& parts() const { return parts_; }
  std::string str() const;
  // Trailing zero components are significant for equality only through
  // their value: "1.10" == "1.010", "1.0" != "1".
  std::strong_ordering operator<=>(const Version& o) const = default;
  bool operator==(const Version& o) const = default;

 private:
  std::vector<unsigned long long> parts_;
};

}  // namespace rehearse
