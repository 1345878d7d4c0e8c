# The quanto command-line tool's contract: exit codes and messages a script can rely on.
# Run by ctest: cmake -DQUANTO=<quanto executable> -DWORK=<scratch folder> -DDATA=<tests/data> -P cli.cmake
cmake_minimum_required(VERSION 3.25)
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
set(failures 0)

# expect(<name> <exit code> <regex that stdout+stderr must match> <args...>)
function(expect name code regex)
  execute_process(COMMAND "${QUANTO}" ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
                  WORKING_DIRECTORY "${WORK}")
  set(all "${out}${err}")
  if(NOT rc STREQUAL "${code}")
    message(SEND_ERROR "${name}: exit code ${rc}, expected ${code}\n${all}")
  elseif(NOT all MATCHES "${regex}")
    message(SEND_ERROR "${name}: output does not match '${regex}':\n${all}")
  else()
    message(STATUS "ok: ${name} (exit ${rc})")
  endif()
endfunction()

expect("no arguments" 2 "Usage:")
expect("--help" 0 "Exit codes:" --help)
expect("--version" 0 "quanto [0-9]+\\.[0-9]+\\.[0-9]+" --version)
expect("quantize --help" 0 "--max-shard-size" quantize --help)
expect("inspect --help" 0 "SQNR" inspect --help)
expect("unknown command" 2 "unknown command 'frobnicate'" frobnicate)
expect("unknown option" 2 "unknown option '--bogus'" quantize a b --weights qint4 --bogus)
expect("short unknown option" 2 "unknown option '-x'" quantize a b --weights qint4 -x)
expect("short option glued to a value" 2 "unknown option '-o7'" quantize a -o7 --weights qint4)
expect("--version with an extra argument" 2 "--version takes no arguments" --version --foo)
expect("-h in a command" 0 "--max-shard-size" quantize -h)
expect("-- ends the options" 5 "cannot open.*-o7" quantize --weights qint4 -- -o7 out-dashdash)
expect("missing --weights" 2 "needs --weights" quantize a b)
expect("missing OUTPUT" 2 "needs INPUT and OUTPUT" quantize a --weights qint4)
expect("unknown qtype" 2 "--weights: unknown qtype 'qint3'" quantize a b --weights qint3)
expect("option without value" 2 "--weights needs a value" quantize a b --weights)
expect("bad shard size" 2 "bad size unit" quantize a b --weights qint4 --max-shard-size 10XB)
expect("bad threads" 2 "--threads needs a number" quantize a b --weights qint4 --threads 0)
expect("exclude and no-default-exclude" 2 "do not go together"
       quantize a b --weights qint4 --exclude x --no-default-exclude)

# The demo: a built-in model, quantized and inspected against its float original.
expect("demo --quiet prints nothing" 0 "^$" quantize --demo demo --quiet)
expect("demo" 0 "quantized 28 modules to qint4.*mean weight SQNR [0-9.]+ dB" quantize --demo demo)
expect("inspect a quantized folder" 0 "28 quantized modules" inspect demo)
expect("inspect a float folder" 0 "model.embed_tokens.weight" inspect demo-float)
expect("inspect --against a float folder" 2 "--against needs a quantized PATH" inspect demo-float --against demo)

# Real runs and their errors.
expect("quantize qint8" 0 "quantized 28 modules to qint8" quantize demo-float out8 --weights qint8 --threads 2)
# Not a terminal: no progress bar (it redraws with \r and says "tensors").
execute_process(COMMAND "${QUANTO}" quantize demo-float outp --weights qint4 RESULT_VARIABLE rc ERROR_VARIABLE err
                WORKING_DIRECTORY "${WORK}")
if(NOT rc EQUAL 0 OR err MATCHES "tensors|\r")
  message(SEND_ERROR "a run into a pipe drew a progress bar or failed (exit ${rc}):\n${err}")
endif()
expect("output exists" 3 "already exists" quantize demo-float out8 --weights qint8)
expect("--force replaces" 0 "quantized 28 modules to qfloat8_e4m3fn" quantize demo-float out8 --weights qfloat8 --force)
expect("already quantized" 6 "already quantized" quantize out8 out8b --weights qint4)
expect("optimizer that does not fit" 6 "absmax|affine" quantize demo-float outx --weights qint8 --optimizer hqq)
expect("nothing selected" 6 "no module is selected" quantize demo-float outy --weights qint4 --include "nothing.*")
expect("sharded" 0 "in [3-9] file\\(s\\)" quantize demo-float out4s --weights qint4 --max-shard-size 1MB)
expect("inspect sharded" 0 "28 quantized modules" inspect out4s --against demo-float)
expect("missing input" 5 "cannot open" quantize no-such-folder outz --weights qint4)
file(WRITE "${WORK}/bad.safetensors" "12345678")
expect("malformed input" 4 "header" quantize bad.safetensors outb --weights qint4)
file(MAKE_DIRECTORY "${WORK}/empty-folder")
expect("folder without a model" 4 "neither model.safetensors" quantize empty-folder oute --weights qint4)
# An OUTPUT that would destroy INPUT is refused before any work, --force or not (exit 7).
expect("OUTPUT is INPUT" 7 "refused: the output .* is the input" quantize demo-float demo-float --weights qint8 --force)
expect("INPUT intact after OUTPUT is INPUT" 0 "model.embed_tokens.weight" inspect demo-float)
file(COPY "${WORK}/demo-float/" DESTINATION "${WORK}/nest/models/llama")
file(WRITE "${WORK}/nest/models/keep.txt" "another model's file")
expect("OUTPUT contains INPUT" 7 "refused: the output .* contains the input"
       quantize nest/models/llama nest/models --weights qint8 --force)
expect("OUTPUT contains a single-file INPUT" 7 "refused: the output .* contains the input"
       quantize nest/models/llama/model.safetensors nest/models --weights qint8 --force)
file(CREATE_LINK "${WORK}/nest/models" "${WORK}/models-link" SYMBOLIC)
expect("OUTPUT contains INPUT through a link" 7 "refused" quantize models-link/llama nest --weights qint8 --force)
expect("INPUT intact after OUTPUT contains it" 0 "model.embed_tokens.weight" inspect nest/models/llama)
if(NOT EXISTS "${WORK}/nest/models/keep.txt")
  message(SEND_ERROR "a refused run deleted a file next to the input")
endif()
# A bad OUTPUT is refused before any work (the messages are the early check's).
file(WRITE "${WORK}/a-file" "not a folder")
expect("OUTPUT is a file, --force" 5 "it is a file, not a folder" quantize demo-float a-file --weights qint8 --force)
file(CREATE_LINK "${WORK}/out8" "${WORK}/link-to-folder" SYMBOLIC)
expect("OUTPUT is a link to a folder, --force" 5 "it is a symbolic link"
       quantize demo-float link-to-folder --weights qint8 --force)
expect("OUTPUT below a file" 5 "is not a folder" quantize demo-float a-file/sub --weights qint8)
file(READ "${WORK}/a-file" kept)
if(NOT kept STREQUAL "not a folder")
  message(SEND_ERROR "a refused run changed the file at OUTPUT")
endif()

# What was not quantized (or not copied) is said: a summary line, and each one with --verbose.
file(COPY "${WORK}/demo-float/" DESTINATION "${WORK}/demo-links")
file(CREATE_LINK "no-such-tokenizer.json" "${WORK}/demo-links/tokenizer.json" SYMBOLIC)
expect("not quantized: summary" 0
       "not quantized \\(copied as they are\\): 10 .weight tensors \\(1 an embedding, 9 rank 1; --verbose lists them\\).*not copied: 1 input file \\(1 a dangling link"
       quantize demo-links outv --weights qint8)
expect("not quantized: --verbose" 0 "model.norm.weight +rank 1.*tokenizer.json +a dangling link"
       quantize demo-links outv2 --weights qint8 --verbose)
expect("--quiet and --verbose" 2 "do not go together" quantize demo-links outv3 --weights qint8 --quiet --verbose)

# SIGINT / SIGTERM during a run (raised by the tool itself after N tensors, see main.cpp):
# exit 130 / 143, a message, no OUTPUT and no staging folder; an OUTPUT being replaced survives.
function(expect_signal name code regex after)
  execute_process(COMMAND "${CMAKE_COMMAND}" -E env "QUANTO_TEST_SIGNAL_AFTER=${after}" "${QUANTO}" ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err WORKING_DIRECTORY "${WORK}")
  if(NOT rc STREQUAL "${code}" OR NOT "${out}${err}" MATCHES "${regex}")
    message(SEND_ERROR "${name}: exit code ${rc} (expected ${code}), output:\n${out}${err}")
  else()
    message(STATUS "ok: ${name} (exit ${rc})")
  endif()
endfunction()
expect_signal("SIGINT" 130 "interrupted by SIGINT.*removed" 3:INT quantize demo-float outsig --weights qint4 --threads 1)
expect_signal("SIGTERM" 143 "interrupted by SIGTERM" 5:TERM quantize demo-float outsig --weights qint8 --threads 2)
expect_signal("SIGINT while replacing" 130 "interrupted by SIGINT" 2:INT
              quantize demo-float out8 --weights qint4 --force --threads 1)
expect("the replaced OUTPUT survived the signal" 0 "28 quantized modules" inspect out8)
if(EXISTS "${WORK}/outsig")
  message(SEND_ERROR "an interrupted run left its OUTPUT")
endif()
file(GLOB leftovers "${WORK}/.*quanto-tmp*")
if(leftovers)
  message(SEND_ERROR "an interrupted run left its staging folder: ${leftovers}")
endif()

foreach(dir outz outb oute outx outy out8b)
  if(EXISTS "${WORK}/${dir}")
    message(SEND_ERROR "a failed run left ${dir} behind")
  endif()
endforeach()
file(GLOB leftovers "${WORK}/.*quanto-tmp*")
if(leftovers)
  message(SEND_ERROR "staging folders left behind: ${leftovers}")
endif()
