# The candidates zsh's completion offers for a command line, as it computes them when
# TAB is pressed: an interactive zsh in a pseudo-terminal (zsh/zpty) with compinit,
# whose compadd is wrapped to print each candidate.
# Usage: zsh -f zsh-complete.zsh <directory holding _butler-analytics> '<command line>'
zmodload zsh/zpty || exit 1
zpty z zsh -f -i
zpty -w z "PROMPT= ; RPROMPT="
zpty -w z "fpath=($1 \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z "zstyle ':completion:*' list-grouped false"
zpty -w z "zstyle ':completion:*' insert-tab false"
zpty -w z "zstyle ':completion:*' list-separator ''"
zpty -w z "compadd () { local -a __hits; builtin compadd -O __hits \"\$@\"; if (( \$#__hits )); then print -r -l -- \"<hit>\"\${^__hits}; fi; builtin compadd -A __hits \"\$@\"; }"
zpty -w z "zstyle ':completion:*' completer _complete"
# Said once the completion has finished, so nothing is typed while it runs (zle
# cuts a completion short when input is waiting).
zpty -w z "_capture_end () { print -r -- '<done>' }; comppostfuncs=(_capture_end)"
zpty -w z "print -r -- '<ready>'"
zpty -r z line '*<ready>*'
zpty -w z "print -r -- '<ready>'"
zpty -r z line '*<ready>*'
zpty -w -n z "$2"$'\t'
while zpty -r z line; do
  if [[ $line == *'<hit>'* ]]; then
    for hit in ${(f)line}; do
      [[ $hit == *'<hit>'* ]] && print -r -- ${${hit#*<hit>}%%$'\r'*}
    done
  fi
  [[ $line == *'<done>'* ]] && break
done
zpty -d z
