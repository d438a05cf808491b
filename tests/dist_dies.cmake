# dist_dies.cmake — one rank of `test_dist --die` exits in the middle of the job while the
# others wait in tg_dist_allreduce_grads. The job must end (mpirun notices the exit and
# stops the other ranks) with a nonzero status, and no surviving rank may get past the
# combine. Usage: cmake -DMPIRUN=mpirun "-DARGS=-np;2;...;test_dist;--die" -P dist_dies.cmake
execute_process(COMMAND ${MPIRUN} ${ARGS} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
message("mpirun exit status: ${rc}\n--- stdout\n${out}\n--- stderr\n${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "mpirun succeeded although a rank died")
endif()
if(NOT err MATCHES "exiting on purpose")
  message(FATAL_ERROR "the dying rank never ran: the job failed for another reason")
endif()
if(out MATCHES "returned although a rank had died")
  message(FATAL_ERROR "a rank got past the combine without its peer")
endif()
