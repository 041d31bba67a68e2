from rnpc_devstack.stack import main

main()
