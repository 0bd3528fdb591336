// The HTTP layer of `imgsearch serve`: routes, parameter checks, JSON, static files.
// The only file that includes httplib.h.
#include "server/server.h"

#include <httplib.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "common/file_io.h"
#include "decode/decode.h"
#include "embed/pooling.h"
#include "index/vector_index.h"
#include "ingest/ingest.h"
#include "search/search.h"
#include "server/collection.h"
#include "server/map_service.h"
#include "server/thumbs.h"

namespace imgsearch::server {
namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

fs::path default_web_dir() { return IMGSEARCH_WEB_DIR; }

namespace {

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Paths need not be UTF-8: invalid bytes become U+FFFD in the JSON text.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json; charset=utf-8");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, status, {{"error", message}});
}

// A client-facing failure: status + message.
struct Failure {
  int status;
  std::string message;
};

// Quotes a user-supplied value for an error message, shortened and made printable.
std::string quote_value(const std::string& raw) {
  std::string s = printable_path(raw.size() > 80 ? raw.substr(0, 80) + "..." : raw);
  return "'" + s + "'";
}

// Decimal digits only (no sign, no spaces), 1..max.
std::optional<int64_t> parse_positive(const std::string& s, int64_t max) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s[0] == '-' || s[0] == '+' || v < 1 || v > max)
    return std::nullopt;
  return v;
}

// Decoder errors (decode.h's stable first words) -> HTTP status.
int status_for_decode_error(const std::string& e) {
  if (e.rfind("not an image", 0) == 0 || e.rfind("unsupported format", 0) == 0) return 415;
  if (e.rfind("too many pixels", 0) == 0) return 413;
  return 400;  // truncated or corrupt, too small, empty
}

std::string mime_of_format(const std::string& format) {
  if (format == "jpeg") return "image/jpeg";
  if (format == "png") return "image/png";
  if (format == "webp") return "image/webp";
  if (format == "gif") return "image/gif";
  if (format == "bmp") return "image/bmp";
  return "";  // not shown by browsers as is (tiff, heif): served converted to JPEG
}

bool is_loopback_host(const std::string& h) {
  return h == "127.0.0.1" || h == "localhost" || h == "::1" || h == "[::1]" || h.rfind("127.", 0) == 0;
}

std::string file_name_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The API's routes, for 404 (unknown endpoint) and 405 (known endpoint, wrong method):
// an exact path, or a prefix followed by one path segment (no '/').
struct Route {
  std::string path;
  bool segment;  // path is a prefix ending in '/', followed by one segment
  std::vector<std::string> methods;
  std::string allow;
  bool matches(const std::string& p) const {
    if (!segment) return p == path;
    return p.size() >= path.size() && p.compare(0, path.size(), path) == 0 &&
           p.find('/', path.size()) == std::string::npos;
  }
};

std::vector<Route> api_routes() {
  auto r = [](std::string path, bool segment, std::vector<std::string> methods) {
    std::string allow;
    for (const auto& m : methods) allow += (allow.empty() ? "" : ", ") + m;
    if (std::find(methods.begin(), methods.end(), "GET") != methods.end()) allow += ", HEAD";
    return Route{std::move(path), segment, std::move(methods), allow};
  };
  return {
      r("/api/health", false, {"GET"}),    r("/api/stats", false, {"GET"}), r("/api/search", false, {"GET", "POST"}),
      r("/api/neighbors/", true, {"GET"}), r("/api/image/", true, {"GET"}), r("/api/thumb/", true, {"GET"}),
      r("/api/map", false, {"GET"})};
}

thread_local Clock::time_point t_request_start;

}  // namespace

struct Server::Impl {
  Options opt;
  std::unique_ptr<search::Searcher> searcher;
  decode::DecodeOptions query_decode;
  std::unique_ptr<ThumbCache> thumbs;
  std::unique_ptr<MapService> map;
  httplib::Server http;
  std::vector<Route> routes = api_routes();
  int port = 0;
  bool have_ui = false;
  std::string ui_problem;

  std::mutex db_mu;  // the Searcher's database: one SQLite connection + the index
  std::shared_ptr<const Collection> coll;

  std::mutex map_json_mu;  // the serialised map, rebuilt when the layout or collection changes
  std::shared_ptr<const std::string> map_json;
  std::shared_ptr<const MapPoints> map_json_points;  // held: its address identifies the layout
  int64_t map_json_seq = -1;

  // The collection as of the catalog's last commit (rebuilt after `index` changes it).
  std::shared_ptr<const Collection> collection() {
    std::lock_guard lock(db_mu);
    return collection_locked();
  }
  std::shared_ptr<const Collection> collection_locked() {
    auto& cat = searcher->db().catalog();
    const int64_t seq = cat.change_seq();
    if (!coll || coll->change_seq() != seq) coll = std::make_shared<const Collection>(cat.list_images(), seq);
    return coll;
  }

  void install_routes();
  std::optional<Failure> parse_k(const httplib::Request& req, int* k) const;
  json hits_json(const std::vector<search::Hit>& hits, const Collection& c) const;
  json item_json(const Item& it, const Collection& c) const;

  void health(const httplib::Request&, httplib::Response& res);
  void stats(const httplib::Request&, httplib::Response& res);
  void search_get(const httplib::Request& req, httplib::Response& res);
  void search_post(const httplib::Request& req, httplib::Response& res);
  void neighbors(const httplib::Request& req, httplib::Response& res);
  void image(const httplib::Request& req, httplib::Response& res);
  void thumb(const httplib::Request& req, httplib::Response& res);
  void map_points(const httplib::Request& req, httplib::Response& res);
  // The indexed image named by a path segment; a Failure for a malformed or unknown id.
  std::variant<const Item*, Failure> item_from_segment(const std::string& segment, const Collection& c) const;
  void by_id(int64_t id, const Item& item, bool exclude_self, int k, const std::shared_ptr<const Collection>& c,
             httplib::Response& res);
};

Server::Server() : impl_(std::make_unique<Impl>()) {}
Server::~Server() {
  if (impl_) impl_->http.stop();
}

Result<std::unique_ptr<Server>> Server::open(const Options& options) {
  std::error_code ec;
  if (options.db_dir.empty()) return make_error("no database given (--db PATH)");
  if (!fs::is_directory(options.db_dir, ec) || !fs::exists(options.db_dir / "catalog.sqlite", ec))
    return make_error(options.db_dir.string() +
                      ": not an imgsearch database (make one with `imgsearch index DIR --db " +
                      options.db_dir.string() + "`)");
  embed::EngineOptions eo;
  eo.threads = options.threads;
  auto searcher = search::Searcher::open(options.db_dir, eo);
  if (!searcher) return make_error(searcher.error());
  std::unique_ptr<Server> s(new Server());
  Impl& m = *s->impl_;
  m.opt = options;
  m.searcher = std::move(*searcher);
  m.query_decode = m.searcher->embedder().decode_options();
  m.query_decode.max_pixels = options.max_upload_pixels;
  m.thumbs = std::make_unique<ThumbCache>(options.db_dir / "thumbs", options.thumb_size);
  m.map = std::make_unique<MapService>(options.db_dir);
  // The index is loaded (or rebuilt) now rather than on the first query.
  {
    auto idx = m.searcher->db().index();
    if (!idx) return make_error(idx.error());
  }
  auto coll = m.collection();
  if (options.compute_map && !coll->items().empty()) m.map->request(coll->change_seq());
  m.install_routes();
  return s;
}

Result<int> Server::bind() {
  Impl& m = *impl_;
  if (m.opt.port == 0) {
    const int p = m.http.bind_to_any_port(m.opt.host);
    if (p <= 0) return make_error("cannot listen on " + m.opt.host + " (any port)");
    m.port = p;
  } else {
    if (!m.http.bind_to_port(m.opt.host, m.opt.port))
      return make_error("cannot listen on " + m.opt.host + ":" + std::to_string(m.opt.port) +
                        " (is the port in use? try another with --port, or --port 0 for any free one)");
    m.port = m.opt.port;
  }
  return m.port;
}

Status Server::run() {
  if (!impl_->http.listen_after_bind()) return make_error("the server stopped with an error");
  return Status::Ok();
}

void Server::stop() { impl_->http.stop(); }
int Server::port() const { return impl_->port; }
bool Server::map_busy() const { return impl_->map->busy(); }

std::string Server::url() const {
  std::string host = impl_->opt.host;
  if (host == "0.0.0.0" || host == "::" || host.empty()) host = "127.0.0.1";
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  return "http://" + host + ":" + std::to_string(impl_->port) + "/";
}

std::optional<Failure> Server::Impl::parse_k(const httplib::Request& req, int* k) const {
  std::string raw;
  if (req.has_param("k"))
    raw = req.get_param_value("k");
  else if (req.has_file("k"))  // a multipart text field
    raw = req.get_file_value("k").content;
  else {
    *k = opt.default_k;
    return std::nullopt;
  }
  auto v = parse_positive(raw, opt.max_k);
  if (!v)
    return Failure{400, "k must be an integer from 1 to " + std::to_string(opt.max_k) + ", not " + quote_value(raw)};
  *k = int(*v);
  return std::nullopt;
}

json Server::Impl::item_json(const Item& it, const Collection& c) const {
  return {{"id", it.id},
          {"path", it.path},
          {"name", file_name_of(it.path)},
          {"class", c.class_of(it)},
          {"width", it.width},
          {"height", it.height},
          {"bytes", it.size}};
}

json Server::Impl::hits_json(const std::vector<search::Hit>& hits, const Collection& c) const {
  json out = json::array();
  for (const auto& h : hits) {
    json j = {{"rank", h.rank}, {"id", h.id}, {"score", h.score}, {"path", h.path}, {"name", file_name_of(h.path)}};
    if (const Item* it = c.by_id(h.id)) {
      j["class"] = c.class_of(*it);
      j["width"] = it->width;
      j["height"] = it->height;
    } else {
      j["class"] = "";
    }
    out.push_back(std::move(j));
  }
  return out;
}

std::variant<const Item*, Failure> Server::Impl::item_from_segment(const std::string& segment,
                                                                   const Collection& c) const {
  auto id = parse_positive(segment, INT64_MAX / 2);
  if (!id) return Failure{400, "bad image id " + quote_value(segment) + ": ids are positive integers (see /api/map)"};
  const Item* it = c.by_id(*id);
  if (!it) return Failure{404, "no indexed image has id " + std::to_string(*id)};
  return it;
}

void Server::Impl::health(const httplib::Request&, httplib::Response& res) {
  auto c = collection();
  send_json(res, 200, {{"status", "ok"}, {"images", c->items().size()}});
}

void Server::Impl::stats(const httplib::Request&, httplib::Response& res) {
  auto c = collection();
  map->request(c->change_seq());
  const auto& s = searcher->db().settings();  // fixed when the database was made
  int64_t in_index = 0;
  std::string index_kind = s.index_spec;  // what was asked ("auto" or a factory string)...
  {
    std::lock_guard lock(db_mu);
    auto idx = searcher->db().index();
    if (idx) {
      in_index = (*idx)->size();
      index_kind = (*idx)->spec();  // ...and the index actually built
    }
  }
  json classes = json::array();
  for (size_t i = 0; i < c->classes().size(); ++i)
    classes.push_back({{"name", c->classes()[i]}, {"count", c->class_counts()[i]}});
  const auto ms = map->state();
  json map_state = {{"status", ms.status == MapService::Status::Ready       ? "ready"
                               : ms.status == MapService::Status::Computing ? "computing"
                               : ms.status == MapService::Status::Failed    ? "failed"
                                                                            : "idle"},
                    {"computing", ms.computing}};
  if (ms.points) {
    map_state["method"] = ms.points->method;
    map_state["change_seq"] = ms.points->change_seq;
    map_state["seconds"] = ms.points->seconds;
    if (!ms.points->note.empty()) map_state["note"] = ms.points->note;
  }
  if (!ms.error.empty()) map_state["error"] = ms.error;
  send_json(res, 200,
            {{"count", c->items().size()},
             {"model", s.representation.model},
             {"layer", s.representation.layer},
             {"pooling", embed::pooling_name(s.representation.pooling)},
             {"metric", index::metric_name(s.metric)},
             {"index", index_kind},
             {"index_requested", s.index_spec},
             {"dim", s.dim},
             {"vectors_in_index", in_index},
             {"change_seq", c->change_seq()},
             {"database", opt.db_dir.string()},
             {"root", c->root()},
             {"classes", classes},
             {"map", map_state},
             {"limits",
              {{"max_upload_bytes", opt.max_upload_bytes},
               {"max_upload_pixels", opt.max_upload_pixels},
               {"max_k", opt.max_k},
               {"default_k", opt.default_k}}}});
}

void Server::Impl::by_id(int64_t id, const Item& item, bool exclude_self, int k,
                         const std::shared_ptr<const Collection>& c, httplib::Response& res) {
  const auto t0 = Clock::now();
  search::Query q;
  q.k = k;
  q.exclude_id = exclude_self ? id : -1;
  Result<std::vector<search::Hit>> hits = std::vector<search::Hit>{};
  {
    std::lock_guard lock(db_mu);
    hits = searcher->by_id(id, q);
  }
  if (!hits) return send_error(res, 500, "search failed: " + hits.error());
  json query = item_json(item, *c);
  query["kind"] = "id";
  send_json(res, 200,
            {{"query", query},
             {"k", k},
             {"results", hits_json(*hits, *c)},
             {"timing", {{"search_ms", ms_since(t0)}, {"total_ms", ms_since(t_request_start)}}}});
}

void Server::Impl::search_get(const httplib::Request& req, httplib::Response& res) {
  int k = 0;
  if (auto f = parse_k(req, &k)) return send_error(res, f->status, f->message);
  const bool has_id = req.has_param("id"), has_path = req.has_param("path");
  if (has_id == has_path)
    return send_error(res, 400,
                      "give exactly one of id=N or path=P (an indexed path), or POST an image as multipart field "
                      "`image`");
  auto c = collection();
  if (has_id) {
    auto r = item_from_segment(req.get_param_value("id"), *c);
    if (auto* f = std::get_if<Failure>(&r)) return send_error(res, f->status, f->message);
    const Item* it = std::get<const Item*>(r);
    return by_id(it->id, *it, false, k, c, res);
  }
  // Exactly an indexed path: never resolved, normalised or opened.
  const std::string path = req.get_param_value("path");
  const Item* it = c->by_path(path);
  if (!it)
    return send_error(
        res, 404,
        "no indexed image has path " + quote_value(path) + " (give the path exactly as indexed, or use id=N)");
  by_id(it->id, *it, false, k, c, res);
}

void Server::Impl::neighbors(const httplib::Request& req, httplib::Response& res) {
  int k = 0;
  if (auto f = parse_k(req, &k)) return send_error(res, f->status, f->message);
  auto c = collection();
  auto r = item_from_segment(req.matches[1], *c);
  if (auto* f = std::get_if<Failure>(&r)) return send_error(res, f->status, f->message);
  const Item* it = std::get<const Item*>(r);
  by_id(it->id, *it, true, k, c, res);
}

void Server::Impl::search_post(const httplib::Request& req, httplib::Response& res) {
  int k = 0;
  if (auto f = parse_k(req, &k)) return send_error(res, f->status, f->message);
  const std::string* bytes = nullptr;
  std::string name = "upload";
  httplib::MultipartFormData part;
  if (req.is_multipart_form_data()) {
    if (!req.has_file("image"))
      return send_error(res, 400, "the multipart form has no `image` field (send the photo as field `image`)");
    part = req.get_file_value("image");
    bytes = &part.content;
    if (!part.filename.empty()) name = file_name_of(part.filename);
  } else {
    const std::string ct = req.get_header_value("Content-Type");
    if (ct.rfind("image/", 0) == 0 || ct.rfind("application/octet-stream", 0) == 0) {
      bytes = &req.body;
    } else if (req.body.empty()) {
      return send_error(res, 400, "no image: POST multipart/form-data with the photo in field `image`");
    } else {
      return send_error(
          res, 415, "unsupported Content-Type " + quote_value(ct) + ": send multipart/form-data with field `image`");
    }
  }
  if (bytes->empty()) return send_error(res, 400, "the uploaded image is empty (0 bytes)");
  const std::span<const uint8_t> data(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size());

  // Type and size from the header first (no pixels decoded), then decode and embed, all
  // outside the database lock.
  const auto t0 = Clock::now();
  auto info = decode::probe_image(data, query_decode);
  if (!info) return send_error(res, status_for_decode_error(info.error()), quote_value(name) + ": " + info.error());
  if (int64_t(info->width) * info->height > opt.max_upload_pixels)
    return send_error(res, 413,
                      quote_value(name) + ": too many pixels (" + std::to_string(info->width) + "x" +
                          std::to_string(info->height) + " > " + std::to_string(opt.max_upload_pixels) + ")");
  auto img = decode::decode_image(data, query_decode);
  if (!img) return send_error(res, status_for_decode_error(img.error()), quote_value(name) + ": " + img.error());
  const double decode_ms = ms_since(t0);
  const auto t1 = Clock::now();
  const decode::RgbImage* batch[] = {&*img};
  auto vec = searcher->embedder().embed(batch);  // thread-safe
  if (!vec) return send_error(res, 500, "embedding failed: " + vec.error());
  const double embed_ms = ms_since(t1);
  const auto t2 = Clock::now();
  search::Query q;
  q.k = k;
  Result<std::vector<search::Hit>> hits = std::vector<search::Hit>{};
  std::shared_ptr<const Collection> c;
  {
    std::lock_guard lock(db_mu);
    hits = searcher->by_vector(*vec, q);
    c = collection_locked();
  }
  if (!hits) return send_error(res, 500, "search failed: " + hits.error());
  const double search_ms = ms_since(t2);
  send_json(res, 200,
            {{"query",
              {{"kind", "upload"},
               {"name", name},
               {"format", info->format},
               {"width", info->width},
               {"height", info->height},
               {"bytes", bytes->size()}}},
             {"k", k},
             {"results", hits_json(*hits, *c)},
             {"timing",
              {{"decode_ms", decode_ms},
               {"embed_ms", embed_ms},
               {"search_ms", search_ms},
               {"total_ms", ms_since(t_request_start)}}}});
}

void Server::Impl::image(const httplib::Request& req, httplib::Response& res) {
  auto c = collection();
  auto r = item_from_segment(req.matches[1], *c);
  if (auto* f = std::get_if<Failure>(&r)) return send_error(res, f->status, f->message);
  const Item& it = *std::get<const Item*>(r);
  auto bytes = read_file_bytes(it.key, uint64_t(1) << 31);
  if (!bytes) return send_error(res, 404, "the file of image " + std::to_string(it.id) + " is gone: " + bytes.error());
  auto info = decode::probe_image(*bytes);
  if (!info) return send_error(res, 415, "image " + std::to_string(it.id) + " is no longer an image: " + info.error());
  const std::string mime = mime_of_format(info->format);
  res.set_header("Cache-Control", "private, max-age=60");
  if (!mime.empty()) {
    res.status = 200;
    res.set_content(reinterpret_cast<const char*>(bytes->data()), bytes->size(), mime);
    return;
  }
  auto jpeg = jpeg_of(*bytes, 2048, 90);  // TIFF, HEIC: browsers cannot show them
  if (!jpeg) return send_error(res, 500, "cannot convert image " + std::to_string(it.id) + ": " + jpeg.error());
  res.status = 200;
  res.set_content(reinterpret_cast<const char*>(jpeg->data()), jpeg->size(), "image/jpeg");
}

void Server::Impl::thumb(const httplib::Request& req, httplib::Response& res) {
  auto c = collection();
  auto r = item_from_segment(req.matches[1], *c);
  if (auto* f = std::get_if<Failure>(&r)) return send_error(res, f->status, f->message);
  const Item& it = *std::get<const Item*>(r);
  const std::string etag = "\"" + it.content_hash + "-" + std::to_string(thumbs->short_side()) + "\"";
  res.set_header("Cache-Control", "private, max-age=60");
  res.set_header("ETag", etag);
  if (req.get_header_value("If-None-Match") == etag) {
    res.status = 304;
    return;
  }
  auto t = thumbs->get(it.key, it.content_hash);
  if (!t) {
    const bool gone = t.error().rfind("gone:", 0) == 0;
    return send_error(
        res, gone ? 404 : 500,
        "no thumbnail for image " + std::to_string(it.id) + " (" + printable_path(it.path) + "): " + t.error());
  }
  res.status = 200;
  res.set_header("X-Thumb-Cache", t->from_cache ? "hit" : "miss");
  res.set_content(reinterpret_cast<const char*>(t->jpeg.data()), t->jpeg.size(), "image/jpeg");
}

void Server::Impl::map_points(const httplib::Request&, httplib::Response& res) {
  auto c = collection();
  if (c->items().empty()) {
    res.set_header("X-Map-Method", "none");
    return send_json(res, 200, json::array());
  }
  map->request(c->change_seq());
  const auto st = map->state();
  if (!st.points) {
    if (st.status == MapService::Status::Failed) return send_error(res, 500, "map layout failed: " + st.error);
    res.set_header("Retry-After", "1");
    return send_json(res, 202, {{"status", "computing"}, {"images", c->items().size()}});
  }
  std::shared_ptr<const std::string> body;
  {
    std::lock_guard lock(map_json_mu);
    if (!map_json || map_json_points != st.points || map_json_seq != c->change_seq()) {
      // [{id, x, y, class, path}], x and y in [0, 1]; ids no longer indexed are left out.
      std::string out = "[";
      char num[64];
      bool first = true;
      for (size_t i = 0; i < st.points->ids.size(); ++i) {
        const Item* it = c->by_id(st.points->ids[i]);
        if (!it) continue;
        json j = {{"id", it->id}, {"class", c->class_of(*it)}, {"path", it->path}};
        std::string s = dump(j);
        // Coordinates with 5 decimals keep 100k points near 10 MB.
        std::snprintf(num, sizeof num, ",\"x\":%.5f,\"y\":%.5f}", double(st.points->xy[2 * i]),
                      double(st.points->xy[2 * i + 1]));
        s.pop_back();
        s += num;
        if (!first) out += ',';
        out += s;
        first = false;
      }
      out += "]";
      map_json = std::make_shared<const std::string>(std::move(out));
      map_json_points = st.points;
      map_json_seq = c->change_seq();
    }
    body = map_json;
  }
  res.set_header("X-Map-Method", st.points->method);
  res.set_header("X-Map-Change-Seq", std::to_string(st.points->change_seq));
  if (st.points->change_seq != c->change_seq()) res.set_header("X-Map-Stale", "1");
  res.set_header("Cache-Control", "no-cache");
  res.status = 200;
  res.set_content(*body, "application/json; charset=utf-8");
}

void Server::Impl::install_routes() {
  // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which would let a second
  // server bind the same port and share its connections instead of failing.
  http.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  http.set_payload_max_length(opt.max_upload_bytes);
  http.set_read_timeout(10);
  http.set_write_timeout(30);
  http.set_default_headers(
      {{"X-Content-Type-Options", "nosniff"}, {"Referrer-Policy", "no-referrer"}, {"X-Frame-Options", "DENY"}});
  const bool loopback = is_loopback_host(opt.host);

  http.set_pre_routing_handler([this, loopback](const httplib::Request& req, httplib::Response& res) {
    t_request_start = Clock::now();
    // Brotli at httplib's default (quality 11) costs far more than it saves on localhost.
    auto& headers = const_cast<httplib::Headers&>(req.headers);  // NOLINT: the request is ours to adjust
    if (auto it = headers.find("Accept-Encoding"); it != headers.end())
      it->second = it->second.find("gzip") != std::string::npos ? "gzip" : "identity";
    // A loopback server answers only to loopback names (DNS rebinding would otherwise let
    // a web page read the photos through the browser).
    if (loopback && req.has_header("Host")) {
      std::string host = req.get_header_value("Host");
      if (!host.empty() && host.front() == '[')
        host = host.substr(0, host.find(']') + 1);
      else if (auto colon = host.find(':'); colon != std::string::npos)
        host = host.substr(0, colon);
      if (!is_loopback_host(host)) {
        send_error(res, 403, "this server answers only to localhost (Host " + quote_value(host) + ")");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    const bool is_get = req.method == "GET" || req.method == "HEAD";
    auto refuse = [&](const std::string& allow) {
      res.set_header("Allow", allow);
      // The body (if any) is not read: do not reuse the connection.
      res.set_header("Connection", "close");
      send_error(res, 405,
                 "method " + req.method + " is not allowed on " + quote_value(req.path) + " (allowed: " + allow + ")");
      return httplib::Server::HandlerResponse::Handled;
    };
    if (req.path.rfind("/api/", 0) != 0 && req.path != "/api") {
      if (!is_get) return refuse("GET, HEAD");  // static files
      return httplib::Server::HandlerResponse::Unhandled;
    }
    for (const auto& r : routes) {
      if (!r.matches(req.path)) continue;
      const bool allowed =
          std::find(r.methods.begin(), r.methods.end(), is_get ? std::string("GET") : req.method) != r.methods.end();
      if (!allowed) return refuse(r.allow);
      return httplib::Server::HandlerResponse::Unhandled;
    }
    res.set_header("Connection", "close");
    send_error(res, 404, "no such API endpoint: " + quote_value(req.path) + " (see /openapi.yaml)");
    return httplib::Server::HandlerResponse::Handled;
  });

  // httplib's own failures (unreadable or malformed body, body over the limit, no route)
  // and anything left without a body become JSON errors too.
  http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                     httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string message;
    switch (res.status) {
      case 400:
        message = req.is_multipart_form_data() ? "malformed multipart/form-data body (send the photo as field `image`)"
                                               : "bad request: the request could not be read";
        break;
      case 404:
        message = "not found: " + quote_value(req.path);
        break;
      case 413:
        message = "upload too large (limit " + std::to_string(opt.max_upload_bytes >> 20) + " MB)";
        break;
      case 416:
        message = "range not satisfiable";
        break;
      default:
        message = "HTTP " + std::to_string(res.status);
    }
    send_error(res, res.status, message);
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, "internal error: " + what);
  });
  if (opt.log_requests) {
    http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      std::fprintf(stderr, "%s %s %d %zu B %.1f ms\n", req.method.c_str(), printable_path(req.path).c_str(), res.status,
                   res.body.size(), ms_since(t_request_start));
    });
  }

  using Req = const httplib::Request&;
  using Res = httplib::Response&;
  http.Get("/api/health", [this](Req q, Res s) { health(q, s); });
  http.Get("/api/stats", [this](Req q, Res s) { stats(q, s); });
  http.Get("/api/search", [this](Req q, Res s) { search_get(q, s); });
  http.Post("/api/search", [this](Req q, Res s) { search_post(q, s); });
  http.Get("/api/neighbors/([^/]*)", [this](Req q, Res s) { neighbors(q, s); });
  http.Get("/api/image/([^/]*)", [this](Req q, Res s) { image(q, s); });
  http.Get("/api/thumb/([^/]*)", [this](Req q, Res s) { thumb(q, s); });
  http.Get("/api/map", [this](Req q, Res s) { map_points(q, s); });

  // The UI: static files of web/dist (httplib refuses paths that climb out of it).
  std::error_code ec;
  if (!fs::is_regular_file(opt.web_dir / "index.html", ec)) {
    ui_problem = "the web UI is not built (no " + (opt.web_dir / "index.html").string() +
                 "): run `npm ci && npm run build` in web/ (scripts/setup.sh does), or pass --web-dir DIR";
  } else if (!http.set_mount_point("/", opt.web_dir.string())) {
    ui_problem = "cannot serve the web UI from " + opt.web_dir.string();
  } else {
    have_ui = true;
    http.set_file_extension_and_mimetype_mapping("js", "text/javascript");
    http.set_file_extension_and_mimetype_mapping("yaml", "text/yaml");
  }
  if (!have_ui) {
    // Reached only when no file answered: say what to do instead of a bare 404.
    http.Get("/", [this](Req, Res s) {
      s.status = 503;
      s.set_content(
          "<!doctype html><meta charset=utf-8><title>imgsearch</title><body style='font:16px "
          "system-ui;margin:3em'><h1>imgsearch</h1><p>" +
              ui_problem + "</p><p>The API works: <a href='/api/stats'>/api/stats</a></p>",
          "text/html; charset=utf-8");
    });
  }
}

int serve(const Options& options) {
  // SIGINT/SIGTERM are taken by sigwait() below; block them before any thread exists so
  // every thread (ONNX Runtime's, httplib's) inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto s = Server::open(options);
  if (!s) {
    std::fprintf(stderr, "imgsearch: error: %s\n", s.error().c_str());
    return 1;
  }
  auto port = (*s)->bind();
  if (!port) {
    std::fprintf(stderr, "imgsearch: error: %s\n", port.error().c_str());
    return 1;
  }
  Server& server = **s;
  auto coll = server.impl_->collection();
  const auto& st = server.impl_->searcher->db().settings();
  std::printf("imgsearch serve: %zu images in %s (%s, layer %s, %s)\n", coll->items().size(), options.db_dir.c_str(),
              st.representation.model.c_str(), st.representation.layer.c_str(), index::metric_name(st.metric).c_str());
  if (!server.impl_->have_ui) std::printf("warning: %s\n", server.impl_->ui_problem.c_str());
  if (!is_loopback_host(options.host))
    std::printf("warning: listening on %s: anyone who can reach this machine can search and see the indexed photos\n",
                options.host.c_str());
  std::printf("\n  Open %s in a browser   (Ctrl-C stops)\n\n", server.url().c_str());
  std::fflush(stdout);

  Status run_status;
  std::atomic<bool> stopping{false};
  const pthread_t main_thread = pthread_self();
  std::thread t([&] {
    run_status = server.run();
    // Stopped on its own: wake the main thread's sigwait (a signal to this process could
    // land on a thread that does not block it, e.g. one OpenBLAS started at load time).
    if (!stopping) pthread_kill(main_thread, SIGTERM);
  });
  int sig = 0;
  sigwait(&stop_signals, &sig);
  stopping = true;
  server.stop();
  t.join();
  if (!run_status) {
    std::fprintf(stderr, "imgsearch: error: %s\n", run_status.error().c_str());
    return 1;
  }
  std::fprintf(stderr, "imgsearch serve: stopped\n");
  if (server.map_busy()) {
    // A map layout is still being computed and cannot be interrupted: leave without
    // running destructors under its feet.
    std::fflush(nullptr);
    std::_Exit(0);
  }
  return 0;
}

}  // namespace imgsearch::server
