// quanto/io/tokenizer.hpp: Hugging Face `tokenizer.json` files of byte-level BPE tokenizers (GPT-2,
// Llama 3, Qwen2 and the like), read into text::bpe_tokenizer (text/bpe.hpp). The file is untrusted:
// it goes through the strict JSON reader (io/json.hpp: UTF-8, no duplicate key, depth, size) into
// a small tree, which the schema below checks. What is read:
//
//   "model"          {"type": "BPE", "vocab": {token: id}, "merges": ["a b"] or [["a", "b"]],
//                     "unk_token", "fuse_unk", "ignore_merges"}; "dropout" null,
//                     "byte_fallback" false, "continuing_subword_prefix" / "end_of_word_suffix"
//                     null or ""
//   "added_tokens"   [{"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}]
//   "normalizer"     null
//   "pre_tokenizer"  ByteLevel, or Sequence [Split {"pattern": {"Regex": the GPT-2, Llama 3 or
//                     Qwen2 regex}, "behavior": "Isolated", "invert": false}, ByteLevel]
//   "post_processor" null, ByteLevel, TemplateProcessing (its "single" template), or a Sequence
//                     of those
//   "decoder"        ByteLevel or null (then the tokenizer cannot decode)
//   "truncation", "padding"  null
//
// Anything else that changes the ids (another model such as WordPiece or Unigram, a normalizer,
// another pre-tokenizer or regex, a processor such as RobertaProcessing) is an unsupported_error
// naming it; a file that is not JSON or not of this shape, or whose vocabulary, merges and added
// tokens do not fit together, is a text::tokenizer_error naming the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/io/file.hpp"
#include "quanto/io/json.hpp"
#include "quanto/io/text.hpp"
#include "quanto/text/bpe.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

/// The largest tokenizer.json read (Llama 3's is about 9 MB).
inline constexpr std::uint64_t max_tokenizer_size = 256'000'000;

namespace detail {

/// The checks of one tokenizer.json, with its name in every message.
class tokenizer_reader {
 public:
  using json = nlohmann::json;
  explicit tokenizer_reader(std::string_view source) : where_("tokenizer " + quote(source, 512) + ": ") {}

  [[noreturn]] void bad(const std::string& what) const { throw text::tokenizer_error(where_ + what); }
  [[noreturn]] void unsupported(const std::string& what) const {
    throw unsupported_error(where_ + what + " (quanto reads byte-level BPE tokenizers: GPT-2, Llama 3, Qwen2 style)");
  }

  const json& member(const json& o, const char* k, const char* in) const {
    const auto it = o.find(k);
    if (it == o.end()) bad(std::string(in) + " has no \"" + k + "\"");
    return *it;
  }
  bool flag(const json& o, const char* k, bool fallback, const char* in) const {
    const auto it = o.find(k);
    if (it == o.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) bad(std::string(in) + ": \"" + k + "\" must be true or false");
    return it->get<bool>();
  }
  const std::string& str(const json& v, const std::string& what) const {
    if (!v.is_string()) bad(what + " must be a string");
    return v.get_ref<const std::string&>();
  }
  std::uint32_t id(const json& v, const std::string& what) const {
    if (!v.is_number_unsigned() || v.get<std::uint64_t>() >= 0x7FFFFFFFu)
      bad(what + " must be an integer from 0 to 2^31 - 2");
    return static_cast<std::uint32_t>(v.get<std::uint64_t>());
  }
  std::string type_of(const json& v, const char* what) const {
    if (!v.is_object()) bad(std::string(what) + " must be an object or null");
    const auto it = v.find("type");
    if (it == v.end() || !it->is_string()) bad(std::string(what) + " has no \"type\"");
    return it->get<std::string>();
  }

  void model(const json& m, text::bpe_spec& spec) const {
    const std::string type = type_of(m, "the model");
    if (type != "BPE") unsupported("the model is " + quote(type) + ", not BPE");
    if (const auto it = m.find("dropout"); it != m.end() && !it->is_null())
      unsupported("BPE dropout (random merges) is not supported");
    if (flag(m, "byte_fallback", false, "the model")) unsupported("BPE byte_fallback is not supported");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (const auto it = m.find(k); it != m.end() && !it->is_null() && !(it->is_string() && it->empty()))
        unsupported(std::string("the model's \"") + k + "\" is not supported");
    if (const auto it = m.find("unk_token"); it != m.end() && !it->is_null())
      spec.unk_token = str(*it, "the model's \"unk_token\"");
    spec.fuse_unk = flag(m, "fuse_unk", false, "the model");
    spec.ignore_merges = flag(m, "ignore_merges", false, "the model");
    const json& vocab = member(m, "vocab", "the model");
    if (!vocab.is_object()) bad("the model's \"vocab\" must be an object of token: id");
    spec.vocab.reserve(vocab.size());
    for (const auto& [token, v] : vocab.items()) spec.vocab.emplace_back(token, id(v, "the id of " + quote(token)));
    const json& merges = member(m, "merges", "the model");
    if (!merges.is_array()) bad("the model's \"merges\" must be an array");
    spec.merges.reserve(merges.size());
    for (std::size_t r = 0; r < merges.size(); ++r) {
      const json& e = merges[r];
      const std::string what = "merge " + std::to_string(r);
      if (e.is_string()) {  // "a b", as older files write them
        const std::string& s = e.get_ref<const std::string&>();
        const auto sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          bad(what + " (" + quote(s) + ") must be two tokens separated by one space");
        spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (e.is_array() && e.size() == 2) {
        spec.merges.emplace_back(str(e[0], what), str(e[1], what));
      } else {
        bad(what + " must be \"a b\" or [\"a\", \"b\"]");
      }
    }
  }

  void added_tokens(const json& a, text::bpe_spec& spec) const {
    if (!a.is_array()) bad("\"added_tokens\" must be an array");
    for (std::size_t k = 0; k < a.size(); ++k) {
      const json& t = a[k];
      const std::string what = "added token " + std::to_string(k);
      if (!t.is_object()) bad(what + " must be an object");
      text::added_token tok;
      tok.id = id(member(t, "id", what.c_str()), what + "'s \"id\"");
      tok.content = str(member(t, "content", what.c_str()), what + "'s \"content\"");
      tok.special = flag(t, "special", false, what.c_str());
      tok.single_word = flag(t, "single_word", false, what.c_str());
      tok.lstrip = flag(t, "lstrip", false, what.c_str());
      tok.rstrip = flag(t, "rstrip", false, what.c_str());
      tok.normalized = flag(t, "normalized", !tok.special, what.c_str());
      spec.added_tokens.push_back(std::move(tok));
    }
  }

  void byte_level(const json& p, text::bpe_spec& spec) const {
    spec.add_prefix_space = flag(p, "add_prefix_space", true, "the ByteLevel pre-tokenizer");
    spec.byte_level_regex = flag(p, "use_regex", true, "the ByteLevel pre-tokenizer");
  }

  void split(const json& p, text::bpe_spec& spec) const {
    const json& pattern = member(p, "pattern", "the Split pre-tokenizer");
    if (!pattern.is_object() || !pattern.contains("Regex"))
      unsupported("the Split pre-tokenizer splits on a string, not one of the known regexes");
    const std::string& re = str(pattern["Regex"], "the Split pattern");
    if (re == text::gpt2_pattern)
      spec.split = text::split_regex::gpt2;
    else if (re == text::llama3_pattern)
      spec.split = text::split_regex::llama3;
    else if (re == text::qwen2_pattern)
      spec.split = text::split_regex::qwen2;
    else
      unsupported("the Split regex " + quote(re, 240) + " is not one of the GPT-2, Llama 3 or Qwen2 regexes");
    const json& behavior = member(p, "behavior", "the Split pre-tokenizer");
    if (!behavior.is_string() || behavior.get<std::string>() != "Isolated")
      unsupported("the Split behavior " + quote(behavior.dump()) + " is not supported (only Isolated)");
    if (flag(p, "invert", false, "the Split pre-tokenizer")) unsupported("an inverted Split is not supported");
  }

  void pre_tokenizer(const json& p, text::bpe_spec& spec) const {
    if (p.is_null()) unsupported("there is no pre-tokenizer: not a byte-level tokenizer");
    const std::string type = type_of(p, "the pre-tokenizer");
    if (type == "ByteLevel") return byte_level(p, spec);
    if (type != "Sequence") unsupported("the pre-tokenizer " + quote(type) + " is not supported");
    const json& list = member(p, "pretokenizers", "the Sequence pre-tokenizer");
    if (!list.is_array()) bad("the Sequence pre-tokenizer's \"pretokenizers\" must be an array");
    const bool has_split = list.size() == 2 && type_of(list[0], "a pre-tokenizer") == "Split";
    if ((list.size() != 1 && !has_split) || type_of(list.back(), "a pre-tokenizer") != "ByteLevel") {
      std::string types;
      for (const json& e : list) types += (types.empty() ? "" : ", ") + type_of(e, "a pre-tokenizer");
      unsupported("the pre-tokenizer sequence [" + types +
                  "] is not supported (only [Split, ByteLevel] or [ByteLevel])");
    }
    if (has_split) split(list[0], spec);
    byte_level(list.back(), spec);
  }

  void template_single(const json& p, text::bpe_spec& spec) const {
    const json& single = member(p, "single", "the TemplateProcessing post-processor");
    const json& specials = member(p, "special_tokens", "the TemplateProcessing post-processor");
    if (!single.is_array() || !specials.is_object()) bad("the TemplateProcessing post-processor is malformed");
    bool seen_sequence = false;
    for (const json& piece : single) {
      if (piece.is_object() && piece.contains("Sequence")) {
        if (seen_sequence) bad("the TemplateProcessing single template holds the sequence twice");
        seen_sequence = true;
        continue;
      }
      if (!piece.is_object() || !piece.contains("SpecialToken") || !piece["SpecialToken"].is_object())
        bad("the TemplateProcessing single template holds something other than Sequence and SpecialToken");
      const std::string& name = str(member(piece["SpecialToken"], "id", "a SpecialToken"), "a SpecialToken's id");
      const auto it = specials.find(name);
      if (it == specials.end() || !it->is_object())
        bad("the template's special token " + quote(name) + " is not in its \"special_tokens\"");
      const json& ids = member(*it, "ids", "a template special token");
      if (!ids.is_array()) bad("the ids of the template's special token " + quote(name) + " must be an array");
      auto& to = seen_sequence ? spec.template_suffix : spec.template_prefix;
      for (const json& i : ids) to.push_back(id(i, "an id of the template's special token " + quote(name)));
    }
    if (!seen_sequence) bad("the TemplateProcessing single template has no sequence");
  }

  // NOLINTNEXTLINE(misc-no-recursion): as deep as the Sequence nesting, which the JSON reader's depth limit bounds
  void post_processor(const json& p, text::bpe_spec& spec, bool& templated) const {
    if (p.is_null()) return;
    const std::string type = type_of(p, "the post-processor");
    if (type == "ByteLevel") return;  // trims offsets: the ids are the same
    if (type == "TemplateProcessing") {
      if (templated) unsupported("two TemplateProcessing post-processors");
      templated = true;
      return template_single(p, spec);
    }
    if (type == "Sequence") {
      const json& list = member(p, "processors", "the Sequence post-processor");
      if (!list.is_array()) bad("the Sequence post-processor's \"processors\" must be an array");
      for (const json& e : list) post_processor(e, spec, templated);
      return;
    }
    unsupported("the post-processor " + quote(type) + " is not supported");
  }

  text::bpe_spec spec(const json& root) const {
    if (!root.is_object()) bad("expected a JSON object");
    text::bpe_spec spec;
    for (const char* k : {"truncation", "padding"})
      if (const auto it = root.find(k); it != root.end() && !it->is_null())
        unsupported(std::string("\"") + k + "\" is set; quanto encodes without truncation or padding");
    if (const auto it = root.find("normalizer"); it != root.end() && !it->is_null())
      unsupported("the normalizer " + quote(type_of(*it, "the normalizer")) + " is not supported");
    model(member(root, "model", "the file"), spec);
    if (const auto it = root.find("added_tokens"); it != root.end() && !it->is_null()) added_tokens(*it, spec);
    const auto pt = root.find("pre_tokenizer");
    pre_tokenizer(pt == root.end() ? json(nullptr) : *pt, spec);
    bool templated = false;
    if (const auto it = root.find("post_processor"); it != root.end()) post_processor(*it, spec, templated);
    spec.byte_level_decoder = false;
    if (const auto it = root.find("decoder"); it != root.end() && !it->is_null()) {
      const std::string type = type_of(*it, "the decoder");
      if (type != "ByteLevel") unsupported("the decoder " + quote(type) + " is not supported");
      spec.byte_level_decoder = true;
    }
    return spec;
  }

  text::bpe_tokenizer build(const text::bpe_spec& s) const {
    try {
      return text::bpe_tokenizer(s);
    } catch (const text::tokenizer_error& e) {
      std::string_view what = e.what();  // "quanto: tokenizer: ..."; the file's name takes the place of the prefix
      if (constexpr std::string_view prefix = "quanto: tokenizer: "; what.starts_with(prefix))
        what.remove_prefix(prefix.size());
      bad(std::string(what));
    }
  }

 private:
  std::string where_;
};

}  // namespace detail

/// The bpe_spec of a tokenizer.json text; `source` names it in messages (see the top of this file).
[[nodiscard]] inline text::bpe_spec parse_tokenizer_spec(std::string_view json_text,
                                                         std::string_view source = "<memory>") {
  detail::tokenizer_reader reader(source);
  detail::json_tree_schema tree;
  try {
    read_json(json_text, tree, json_limits{max_tokenizer_size, 64, /*object_only=*/true});
  } catch (const json_error& e) {
    reader.bad(e.description());
  }
  return reader.spec(tree.root);
}

/// The tokenizer of a tokenizer.json text (see the top of this file).
[[nodiscard]] inline text::bpe_tokenizer parse_tokenizer(std::string_view json_text,
                                                         std::string_view source = "<memory>") {
  const text::bpe_spec spec = parse_tokenizer_spec(json_text, source);
  return detail::tokenizer_reader(source).build(spec);
}

/// Reads the tokenizer.json at `path` (a file, or a model folder holding one). `file_error` when it
/// cannot be read; text::tokenizer_error / unsupported_error as `parse_tokenizer`.
[[nodiscard]] inline text::bpe_tokenizer read_tokenizer(const std::filesystem::path& path) {
  std::error_code ec;
  const auto file = std::filesystem::is_directory(path, ec) ? path / "tokenizer.json" : path;
  const auto [bytes, size, mapped] = detail::read_whole_file(file);
  return parse_tokenizer(std::string_view(reinterpret_cast<const char*>(bytes.get()), size), file.string());
}

}  // namespace io
QUANTO_END_NAMESPACE
