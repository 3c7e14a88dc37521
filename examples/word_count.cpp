// word_count: counts words in parallel on the CPU pool. Files are read by fibers
// (fibers::read_file: io_uring or the blocking pool), each file is cut into pieces that
// cpu::async counts on the work-stealing pool, and the fiber that waits for the counts parks
// while they run.
//
//   word_count FILE...   the five most frequent words of the files
//   word_count           the same over a generated text
#include <fibers/fibers.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace {

using counts = std::map<std::string, long, std::less<>>;

counts count_words(std::string_view text) {
  counts c;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && !std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::size_t j = i;
    std::string word;
    while (j < text.size() && std::isalpha(static_cast<unsigned char>(text[j]))) {
      word += static_cast<char>(std::tolower(static_cast<unsigned char>(text[j++])));
    }
    if (!word.empty()) ++c[word];
    i = j;
  }
  return c;
}

// Cuts `text` into about `n` pieces at whitespace.
std::vector<std::string_view> pieces(std::string_view text, std::size_t n) {
  std::vector<std::string_view> out;
  const std::size_t step = std::max<std::size_t>(1, text.size() / n);
  std::size_t begin = 0;
  while (begin < text.size()) {
    std::size_t end = std::min(text.size(), begin + step);
    while (end < text.size() && !std::isspace(static_cast<unsigned char>(text[end]))) ++end;
    out.push_back(text.substr(begin, end - begin));
    begin = end;
  }
  return out;
}

std::string generated_text() {
  const char* words[] = {"fiber", "thread", "reactor", "deadline", "channel", "select", "scope"};
  std::string text;
  for (unsigned long i = 0; i < 200'000; ++i) {
    text += words[(i * i + i / 3) % 7];
    text += i % 13 == 0 ? '\n' : ' ';
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) try {
  return fibers::run([&] {
    std::vector<std::string> texts;
    for (int i = 1; i < argc; ++i) texts.push_back(fibers::read_file(argv[i]));
    if (texts.empty()) texts.push_back(generated_text());

    std::vector<fibers::future<counts>> parts;
    for (const std::string& t : texts) {
      for (std::string_view piece : pieces(t, 16)) {
        parts.push_back(fibers::cpu::async([piece] { return count_words(piece); }));
      }
    }
    counts total;
    for (auto& f : parts) {
      for (auto& [word, n] : f.get()) total[word] += n;  // parks this fiber only
    }
    std::vector<std::pair<std::string, long>> top(total.begin(), total.end());
    std::sort(top.begin(), top.end(), [](auto& a, auto& b) {
      return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    if (top.size() > 5) top.resize(5);
    for (auto& [word, n] : top) std::printf("%8ld %s\n", n, word.c_str());
    return 0;
  });
} catch (const std::exception& e) {
  std::fprintf(stderr, "word_count: %s\n", e.what());  // "open /x: No such file or directory"
  return 1;
}
