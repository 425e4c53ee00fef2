# Writes the random GPT-2 models the tests share (run by CTest as the fixture test `make_test_models`).
# Usage: cmake -DCORTEX=path/to/cortex -DOUT=dir -P make_test_models.cmake
foreach(spec "tiny;safetensors;tiny;tiny/model.safetensors" "tiny;gguf;tiny.gguf;tiny.gguf"
             "124M;safetensors;124M;124M/model.safetensors" "124M;gguf;124M.gguf;124M.gguf")
  list(GET spec 0 shape)
  list(GET spec 1 format)
  list(GET spec 2 name)
  list(GET spec 3 marker)
  if(NOT EXISTS "${OUT}/${marker}")
    execute_process(COMMAND "${CORTEX}" model random --shape ${shape} --seed 7 --format ${format}
                            --out "${OUT}/${name}" RESULT_VARIABLE rc)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "cortex model random --shape ${shape} --format ${format} failed: ${rc}")
    endif()
  endif()
endforeach()
