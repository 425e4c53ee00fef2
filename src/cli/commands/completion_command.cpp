// cortex completion bash|zsh: a shell completion script (subcommands, flags, deployed API names).
#include <iostream>

#include "cli/commands/commands.h"
#include "util/error.h"

namespace cortex::cli {

namespace {

// Completes subcommands at the first position and API names after the commands that take one; API
// names come from `cortex get -o name` (nothing when no operator runs).
// clang-format off
constexpr const char* kBash = R"SH(# cortex bash completion: source <(cortex completion bash)
_cortex() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local commands="deploy get describe logs delete refresh predict cluster operator serve pull cache generate tokenize detokenize model bench completion"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=( $(compgen -W "$commands --help --version --log-level" -- "$cur") )
    return
  fi
  case "${COMP_WORDS[1]}" in
    get|describe|logs|delete|refresh|predict)
      if [ "$COMP_CWORD" -eq 2 ] && [[ "$cur" != -* ]]; then
        COMPREPLY=( $(compgen -W "$(cortex get -o name 2>/dev/null)" -- "$cur") )
      else
        COMPREPLY=( $(compgen -f -W "--watch --output --follow --all --wait --help" -- "$cur") )
      fi ;;
    cluster) COMPREPLY=( $(compgen -W "up down info" -- "$cur") ) ;;
    cache)
      if [ "$COMP_CWORD" -eq 2 ]; then
        COMPREPLY=( $(compgen -W "ls rm prune" -- "$cur") )
      else
        COMPREPLY=( $(compgen -f -W "--json --unused-for --all --dry-run --converted-cache --help" -- "$cur") )
      fi ;;
    completion) COMPREPLY=( $(compgen -W "bash zsh" -- "$cur") ) ;;
    *) COMPREPLY=( $(compgen -f -- "$cur") ) ;;
  esac
}
complete -F _cortex cortex
)SH";

constexpr const char* kZsh = R"SH(# cortex zsh completion: source <(cortex completion zsh)
autoload -U +X bashcompinit && bashcompinit
)SH";
// clang-format on

}  // namespace

void add_completion_command(CLI::App& app) {
  auto shell = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("completion", "Print a shell completion script (bash or zsh)");
  cmd->add_option("shell", *shell, "bash or zsh")->required()->check(CLI::IsMember({"bash", "zsh"}));
  cmd->callback([shell] {
    // zsh runs the bash script through bashcompinit.
    if (*shell == "zsh") std::cout << kZsh;
    std::cout << kBash;
  });
}

}  // namespace cortex::cli
