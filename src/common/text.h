// Byte strings that are meant to be text but need not be: file names on Linux are bytes,
// not necessarily UTF-8 (a Latin-1 name from an old camera card, a broken archive).
//
// JSON has no byte strings, so a path goes into JSON losslessly as two fields (see
// common/json_path.h): a readable UTF-8 string with U+FFFD for every invalid byte, and,
// only when the name is not valid UTF-8, the exact bytes in hex. Valid UTF-8 is passed
// through unchanged, in whatever normalisation form it has (NFC and NFD names are
// different files on Linux, so they must stay different strings).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace imgsearch {

// Length of the well-formed UTF-8 sequence that starts at s[i] (1..4), or 0 when the
// byte there does not start one.
size_t utf8_sequence_length(std::string_view s, size_t i);

// True when every byte sequence is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view s);

// `s` with each byte that is not part of a well-formed UTF-8 sequence replaced by U+FFFD.
std::string utf8_lossy(std::string_view s);

// Lower-case hex of every byte ("caf\xe9" -> "636166e9"), and back (nullopt if not hex).
std::string hex_encode(std::string_view bytes);
std::optional<std::string> hex_decode(std::string_view hex);

}  // namespace imgsearch
