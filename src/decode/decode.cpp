// decode: libvips behind a small, exception-free interface (see decode.h).
//
// Loader policy (measured on Debian libvips 8.14.1):
//  - We sniff the format from magic bytes ourselves and refuse everything else, so libvips'
//    own format guessing only ever sees bytes of the seven formats we support.
//  - Untrusted loaders are blocked. BMP has no native loader in this build; it is only readable
//    through ImageMagick (magickload, marked untrusted). A blocked operation fails even when
//    called by name ("magickload_buffer: operation is blocked"), so decode_init() unblocks
//    exactly one class, VipsForeignLoadMagickBuffer (file/source variants stay blocked).
//    vips_foreign_find_load_buffer() does not skip blocked loaders and picks ImageMagick for
//    any buffer no native loader claims (a TIFF cut before its IFD, PPM, ...), so every load
//    first asks it which loader it will use and refuses unless it is the one expected for the
//    sniffed format: ImageMagick only ever sees bytes that start "BM" with a valid BMP
//    info-header size. thumbnail_buffer() runs the same finder on the same bytes.
//  - fail_on=truncated: catches data that ends mid-scan (libjpeg's "Premature end of input
//    file": skimage-truncated.jpg, any JPEG cut in half; also cut PNG/GIF/WebP/TIFF/HEIF/BMP).
//    "error" and "warning" catch nothing more in ../shared (every valid oddity and all ~900
//    photos decode at all three levels); we stay at the lowest level that does the job, since
//    "warning" also rejects files libjpeg recovers from (e.g. "extraneous bytes before marker").
//    video-001.progressive.truncated.jpeg fails at NO level: it is a well-formed progressive
//    JPEG whose later scans were dropped before a proper EOI, so libjpeg emits no warning and
//    the picture is complete, only blurrier. Go's image tests also treat it as valid.
//
// Errors: libvips' error buffer is one process-wide log shared by all threads, and some
// successful loads leave junk in it (heifload on photo.heic logs "source: bad seek to ..."),
// which a later VError would report as its first line. So every call clears the buffer after
// each successful libvips step, and on failure keeps the first line of the VError (which copied
// the buffer when thrown) and clears it again. Single-threaded the detail is exact; under
// concurrent failures it may come from another thread or be lost ("decoder error"). The stable
// prefix, built from our own sniffed format, is always right.
#include "decode/decode.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <string_view>
#include <vips/vips8>

namespace imgsearch::decode {
namespace {

using vips::VError;
using vips::VImage;

bool g_init_ok = false;

struct Format {
  std::string_view name;    // as in ImageInfo::format
  std::string_view loader;  // libvips class we expect vips_foreign_find_load_buffer to pick
};

bool starts_with(std::span<const uint8_t> b, std::string_view magic, size_t at = 0) {
  return b.size() >= at + magic.size() && std::memcmp(b.data() + at, magic.data(), magic.size()) == 0;
}

uint32_t le32(const uint8_t* p) { return p[0] | p[1] << 8 | p[2] << 16 | uint32_t(p[3]) << 24; }
uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

std::string lower_prefix(std::span<const uint8_t> b, size_t n) {
  std::string s(b.begin(), b.begin() + std::min(n, b.size()));
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Why the bytes are not something we decode: "not an image (...)" or "unsupported format (...)".
Error describe_other(std::span<const uint8_t> b) {
  struct Known {
    std::string_view magic;
    size_t at;
    const char* what;
    bool image;
  };
  static constexpr Known kKnown[] = {
      {"\xFF\x0A", 0, "jxl", true},
      {"JXL ", 4, "jxl", true},
      {"jP  ", 4, "jpeg2000", true},
      {"\xFF\x4F\xFF\x51", 0, "jpeg2000", true},
      {"8BPS", 0, "psd", true},
      {"%PDF", 0, "PDF document", false},
      {"PK\x03\x04", 0, "ZIP archive", false},
      {"\x1F\x8B", 0, "gzip data", false},
      {"\x7F"
       "ELF",
       0, "ELF executable", false},
  };
  for (const Known& k : kKnown)
    if (starts_with(b, k.magic, k.at))
      return make_error(std::string(k.image ? "unsupported format (" : "not an image (") + k.what + ")");
  if (starts_with(b, "ftyp", 4))
    return make_error("not an image (ISO media, brand '" +
                      std::string(reinterpret_cast<const char*>(b.data()) + 8, std::min<size_t>(4, b.size() - 8)) +
                      "', e.g. video)");
  // Text: no control bytes other than whitespace in the first 512 bytes (UTF-8 allowed).
  const size_t n = std::min<size_t>(512, b.size());
  bool text = true;
  for (size_t i = 0; i < n && text; ++i) {
    uint8_t c = b[i];
    text = c >= 0x20 ? c != 0x7F : (c == '\t' || c == '\n' || c == '\r' || c == '\f');
  }
  if (text) {
    std::string head = lower_prefix(b, n);
    if (head.find("<svg") != std::string::npos) return make_error("unsupported format (svg)");
    if (head.find("<html") != std::string::npos || head.find("<!doctype html") != std::string::npos)
      return make_error("not an image (HTML)");
    if (head.find("<?xml") != std::string::npos) return make_error("not an image (XML)");
    return make_error("not an image (text)");
  }
  std::string hex;
  static constexpr char kDigits[] = "0123456789abcdef";
  for (size_t i = 0; i < std::min<size_t>(8, b.size()); ++i) {
    if (i) hex += ' ';
    hex += kDigits[b[i] >> 4];
    hex += kDigits[b[i] & 15];
  }
  return make_error("not an image (unknown magic bytes " + hex + ")");
}

Result<Format> sniff(std::span<const uint8_t> b) {
  if (b.empty()) return make_error("empty input");
  if (starts_with(b, "\xFF\xD8\xFF")) return Format{"jpeg", "VipsForeignLoadJpegBuffer"};
  if (starts_with(b, "\x89PNG\r\n\x1A\n")) return Format{"png", "VipsForeignLoadPngBuffer"};
  if (starts_with(b, "GIF87a") || starts_with(b, "GIF89a")) return Format{"gif", "VipsForeignLoadNsgifBuffer"};
  if (starts_with(b, "RIFF") && starts_with(b, "WEBP", 8)) return Format{"webp", "VipsForeignLoadWebpBuffer"};
  if (starts_with(b, std::string_view("II*\0", 4)) || starts_with(b, std::string_view("MM\0*", 4)) ||
      starts_with(b, std::string_view("II+\0", 4)) || starts_with(b, std::string_view("MM\0+", 4)))
    return Format{"tiff", "VipsForeignLoadTiffBuffer"};
  if (starts_with(b, "ftyp", 4) && b.size() >= 16) {
    // Major brand, then compatible brands up to the end of the ftyp box.
    const size_t box = std::min<size_t>(be32(b.data()), b.size());
    for (size_t at = 8; at + 4 <= box; at += (at == 8 ? 8 : 4)) {
      std::string_view brand(reinterpret_cast<const char*>(b.data()) + at, 4);
      for (std::string_view h : {"heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1", "avif", "avis"})
        if (brand == h) return Format{"heif", "VipsForeignLoadHeifBuffer"};
    }
  }
  // BMP: "BM" alone is too weak a signature to hand bytes to ImageMagick; also require one of the
  // known DIB header sizes.
  if (starts_with(b, "BM") && b.size() >= 18) {
    const uint32_t dib = le32(b.data() + 14);
    if (dib == 12 || dib == 40 || dib == 52 || dib == 56 || dib == 64 || dib == 108 || dib == 124)
      return Format{"bmp", "VipsForeignLoadMagickBuffer"};
  }
  return describe_other(b);
}

std::string first_line(std::string_view s) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  s = s.substr(0, s.find('\n'));
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s.empty() ? std::string("decoder error") : std::string(s);
}

Error vips_failure(std::string_view what, const VError& e) {
  std::string msg = first_line(e.what());
  vips_error_clear();  // see the note at the top about the shared error buffer
  return make_error(std::string(what) + ": " + msg);
}

// Borrowed bytes as a VipsBlob (no copy; every image using it dies before we return).
struct Blob {
  VipsBlob* blob;
  explicit Blob(std::span<const uint8_t> b) : blob(vips_blob_new(nullptr, b.data(), b.size())) {}
  ~Blob() { vips_area_unref(reinterpret_cast<VipsArea*>(blob)); }
  Blob(const Blob&) = delete;
  Blob& operator=(const Blob&) = delete;
};

struct Header {
  Format format;
  ImageInfo info;
  bool has_icc = false;
  bool cmyk_without_profile = false;
};

Result<Header> read_header(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  decode_init();
  if (!g_init_ok) return make_error("unsupported format (libvips failed to initialise)");
  auto format = sniff(bytes);
  if (!format) return make_error(format.error());
  // The finder ignores blocking (8.14.1 returns blocked loaders too) and falls back to
  // ImageMagick for anything its own loader rejects, e.g. a TIFF cut before its IFD.
  const char* loader = vips_foreign_find_load_buffer(bytes.data(), bytes.size());
  if (!loader) vips_error_clear();  // "buffer is not in a known format": we say it ourselves
  if (!loader || format->loader != loader)
    return make_error("truncated or corrupt " + std::string(format->name) + ": header not recognised by its decoder");
  Header h{*format, {}, false, false};
  h.info.format = format->name;
  try {
    // Lazy: parses the header only.
    VImage im = VImage::new_from_buffer(bytes.data(), bytes.size(), "",
                                        VImage::option()->set("fail_on", VIPS_FAIL_ON_TRUNCATED));
    h.info.width = im.width();
    h.info.height = im.height();
    if (im.get_typeof(VIPS_META_ORIENTATION)) h.info.orientation = std::clamp(im.get_int(VIPS_META_ORIENTATION), 1, 8);
    if (h.info.orientation >= 5) std::swap(h.info.width, h.info.height);
    // Profiles that don't fit the pixels (an RGB profile on a grey JPEG, seen in the ImageNet
    // sample) or that lcms can't parse make icc_transform fail: ignore those.
    if (im.get_typeof(VIPS_META_ICC_NAME)) {
      size_t len = 0;
      const void* icc = im.get_blob(VIPS_META_ICC_NAME, &len);
      h.has_icc = vips_icc_is_compatible_profile(im.get_image(), icc, len);
    }
    h.cmyk_without_profile = im.interpretation() == VIPS_INTERPRETATION_CMYK && !h.has_icc;
  } catch (const VError& e) {
    return vips_failure("truncated or corrupt " + std::string(format->name), e);
  }
  vips_error_clear();  // drop junk a successful header read may have logged
  const int w = h.info.width, ht = h.info.height;
  const std::string dims = std::to_string(w) + "x" + std::to_string(ht);
  if (int64_t(w) * ht > options.max_pixels)
    return make_error("too many pixels (" + dims + " > " + std::to_string(options.max_pixels) + ")");
  if (std::min(w, ht) < options.min_side_px)
    return make_error("too small (" + dims + " < " + std::to_string(options.min_side_px) + " px)");
  return h;
}

// CMYK with no (usable) embedded profile: libvips would import it through its fallback
// profile, which shifts colours a lot (mean abs diff ~27 on video-001.cmyk.jpeg); browsers,
// ImageMagick, Pillow and Go use the naive device conversion, and so do we.
VImage naive_cmyk_to_srgb(const VImage& cmyk) {
  VImage k = 255 - cmyk[3];
  VImage rgb = ((255 - cmyk.extract_band(0, VImage::option()->set("n", 3))) * k / 255).rint();
  return rgb.cast(VIPS_FORMAT_UCHAR).copy(VImage::option()->set("interpretation", VIPS_INTERPRETATION_sRGB));
}

// Any decoded image -> 3-band uchar sRGB, alpha composited on white. `managed`: thumbnail
// already applied the embedded profile (export_profile=srgb), don't do it twice.
VImage to_rgb8(VImage im, const Header& h, bool managed) {
  if (h.cmyk_without_profile && im.interpretation() == VIPS_INTERPRETATION_CMYK && im.bands() >= 4) {
    im = naive_cmyk_to_srgb(im);
  } else if (h.has_icc && !managed) {
    im = im.icc_transform("srgb", VImage::option()->set("embedded", true));
  }
  if (!vips_colourspace_issupported(im.get_image())) {  // e.g. a 2-band "multiband" TIFF
    const bool wide = im.format() == VIPS_FORMAT_USHORT, grey = im.bands() < 3;
    im = im.copy(
        VImage::option()->set("interpretation", grey ? (wide ? VIPS_INTERPRETATION_GREY16 : VIPS_INTERPRETATION_B_W)
                                                     : (wide ? VIPS_INTERPRETATION_RGB16 : VIPS_INTERPRETATION_sRGB)));
  }
  if (im.interpretation() != VIPS_INTERPRETATION_sRGB) im = im.colourspace(VIPS_INTERPRETATION_sRGB);
  if (im.has_alpha())
    im = im.flatten(VImage::option()
                        ->set("background", std::vector<double>{255, 255, 255})
                        ->set("max_alpha", im.format() == VIPS_FORMAT_USHORT ? 65535.0 : 255.0));
  if (im.format() == VIPS_FORMAT_USHORT) im = im / 257;  // 16-bit left over without RGB16 tag
  if (im.format() != VIPS_FORMAT_UCHAR) im = im.cast(VIPS_FORMAT_UCHAR);
  if (im.bands() == 1) im = im.bandjoin({im, im});
  if (im.bands() > 3) im = im.extract_band(0, VImage::option()->set("n", 3));
  return im;
}

RgbImage to_rgb_image(const VImage& im) {
  RgbImage out{im.width(), im.height(), std::vector<uint8_t>(size_t(im.width()) * im.height() * 3)};
  // Render straight into our buffer (a foreign-memory vips image): no second full-size copy.
  im.write(VImage::new_from_memory(out.pixels.data(), out.pixels.size(), out.width, out.height, 3, VIPS_FORMAT_UCHAR));
  return out;
}

// Exact target size for thumbnails: short side == t, long side rounded.
std::pair<int, int> target_dims(int w, int h, int t) {
  if (w >= h) return {std::max(1, int(std::lround(double(w) * t / h))), t};
  return {t, std::max(1, int(std::lround(double(h) * t / w)))};
}

}  // namespace

void decode_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (VIPS_INIT("imgsearch") != 0) return;
    vips_cache_set_max(0);    // no operation cache: memory stays flat over millions of files
    vips_concurrency_set(1);  // we parallelise across files ourselves
    vips_block_untrusted_set(TRUE);
    vips_operation_block_set("VipsForeignLoadMagickBuffer", FALSE);  // BMP only; see top of file
    g_init_ok = true;
  });
}

Result<ImageInfo> probe_image(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  auto h = read_header(bytes, options);
  if (!h) return make_error(h.error());
  return h->info;
}

Result<RgbImage> decode_image(std::span<const uint8_t> bytes, const DecodeOptions& options) {
  auto h = read_header(bytes, options);  // limits are checked here, before any pixel is decoded
  if (!h) return make_error(h.error());
  const std::string fmt(h->format.name);
  const int t = options.target_short_side;
  try {
    Blob blob(bytes);
    VImage im;
    const bool thumbnail = t > 0 && !h->cmyk_without_profile;
    if (thumbnail) {
      // Shrink-on-load (JPEG DCT scaling, WebP/HEIF scaled decode), autorotate, colour-manage.
      // The bound on the long side is huge so the short side decides the scale.
      // export_profile makes it apply an embedded profile; only set it when there is one, as
      // building the lcms transform costs ~13 ms per image.
      const bool landscape = h->info.width >= h->info.height;
      // thumbnail_buffer's own fail_on is not forwarded to the loader in 8.14.1 (a cut
      // progressive JPEG then decodes "fine"); the loader option string is.
      auto opts = VImage::option()
                      ->set("height", landscape ? t : VIPS_MAX_COORD)
                      ->set("option_string", "fail_on=truncated")
                      ->set("fail_on", VIPS_FAIL_ON_TRUNCATED);
      if (h->has_icc) opts->set("export_profile", "srgb");
      im = VImage::thumbnail_buffer(blob.blob, landscape ? VIPS_MAX_COORD : t, opts);
    } else {
      auto opts = VImage::option()->set("fail_on", VIPS_FAIL_ON_TRUNCATED)->set("memory", true);
      if (t > 0 && fmt == "jpeg") {  // naive-CMYK path: keep JPEG shrink-on-load by hand
        const int short_side = std::min(h->info.width, h->info.height);
        int shrink = 8;
        while (shrink > 1 && short_side / shrink < t) shrink /= 2;
        opts->set("shrink", shrink);
      }
      im = VImage::new_from_buffer(bytes.data(), bytes.size(), "", opts).autorot();
      if (t > 0) {
        auto [tw, th] = target_dims(im.width(), im.height(), t);
        im = im.resize(double(tw) / im.width(), VImage::option()->set("vscale", double(th) / im.height()));
      }
    }
    im = to_rgb8(im, *h, thumbnail);
    if (t > 0) {
      // thumbnail rounds each axis itself; make the short side exact whatever it did.
      auto [tw, th] = target_dims(h->info.width, h->info.height, t);
      if (im.width() != tw || im.height() != th)
        im = im.resize(double(tw) / im.width(), VImage::option()->set("vscale", double(th) / im.height()));
    }
    RgbImage out = to_rgb_image(im);
    vips_error_clear();
    return out;
  } catch (const VError& e) {
    return vips_failure("truncated or corrupt " + fmt, e);
  } catch (const std::bad_alloc&) {
    return make_error("out of memory (" + std::to_string(h->info.width) + "x" + std::to_string(h->info.height) + ")");
  }
}

namespace {

Result<std::vector<uint8_t>> encode(const RgbImage& image, bool jpeg, int quality) {
  if (image.width <= 0 || image.height <= 0 || image.pixels.size() != size_t(image.width) * image.height * 3)
    return make_error("invalid image (" + std::to_string(image.width) + "x" + std::to_string(image.height) + ", " +
                      std::to_string(image.pixels.size()) + " bytes)");
  decode_init();
  if (!g_init_ok) return make_error("encode failed: libvips failed to initialise");
  try {
    // vips only reads from this memory; the API just isn't const-correct.
    VImage im = VImage::new_from_memory(const_cast<uint8_t*>(image.pixels.data()), image.pixels.size(), image.width,
                                        image.height, 3, VIPS_FORMAT_UCHAR);
    VipsBlob* blob =
        jpeg ? im.jpegsave_buffer(VImage::option()->set("Q", std::clamp(quality, 1, 100))->set("strip", true))
             : im.pngsave_buffer(VImage::option()->set("strip", true));
    size_t size = 0;
    const auto* p = static_cast<const uint8_t*>(
        vips_area_get_data(reinterpret_cast<VipsArea*>(blob), &size, nullptr, nullptr, nullptr));
    std::vector<uint8_t> out(p, p + size);
    vips_area_unref(reinterpret_cast<VipsArea*>(blob));
    return out;
  } catch (const VError& e) {
    return vips_failure(jpeg ? "encode failed (jpeg)" : "encode failed (png)", e);
  }
}

}  // namespace

Result<std::vector<uint8_t>> encode_jpeg(const RgbImage& image, int quality) { return encode(image, true, quality); }

Result<std::vector<uint8_t>> encode_png(const RgbImage& image) { return encode(image, false, 0); }

}  // namespace imgsearch::decode
