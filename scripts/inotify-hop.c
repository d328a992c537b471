// How long a rename in one process takes to reach a waiting thread of another through
// inotify, two ways: the waiting thread polls the inotify descriptor itself (`0`), or a
// reading thread blocks in read() and wakes it through a condvar (`1`), as lockbydir's host
// does (host/src/backend/lockdir/watch.rs). Numbers in docs/performance.md.
//
//   gcc -O2 -o /tmp/inotify-hop scripts/inotify-hop.c -lpthread
//   mkdir -p /dev/shm/hop && /tmp/inotify-hop 0 2000 /dev/shm/hop && /tmp/inotify-hop 1 2000 /dev/shm/hop
//
// The renamer (a child process) renames a directory 300 µs after each turn begins; the time
// is from just before its rename() to the waiter running again.
#define _GNU_SOURCE
#include <sys/inotify.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <sys/stat.h>
static long long now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000000LL+t.tv_nsec;}
static int ifd; static pthread_mutex_t m=PTHREAD_MUTEX_INITIALIZER; static pthread_cond_t c=PTHREAD_COND_INITIALIZER; static int fired;
static void* reader(void*_){char buf[4096];for(;;){int n=read(ifd,buf,sizeof buf);if(n<=0)continue;int mv=0;for(char*p=buf;p<buf+n;){struct inotify_event*e=(void*)p;if(e->mask&IN_MOVE_SELF)mv=1;p+=sizeof *e+e->len;}if(!mv)continue;pthread_mutex_lock(&m);fired=1;pthread_cond_signal(&c);pthread_mutex_unlock(&m);}return 0;}
int cmp(const void*a,const void*b){long long x=*(long long*)a,y=*(long long*)b;return x<y?-1:x>y;}
int main(int argc,char**argv){
  int hop=atoi(argv[1]); int N=atoi(argv[2]); const char*dir=argv[3];
  long long *shared=mmap(0,4096*8,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_ANONYMOUS,-1,0);
  volatile int *turn=(int*)(shared+1000);
  ifd=inotify_init1(hop?0:IN_NONBLOCK);
  char a[512],b[512]; snprintf(a,512,"%s/a",dir); snprintf(b,512,"%s/b",dir); rmdir(a); rmdir(b); mkdir(a,0755);
  pid_t p=fork();
  if(p==0){ // renamer: wait for turn, sleep a bit, then rename a<->b
    for(int i=0;i<N;i++){ while(*turn!=2*i+1) usleep(50); usleep(300); const char*f=(i%2)?b:a,*t=(i%2)?a:b; shared[i]=now(); rename(f,t); }
    _exit(0);}
  pthread_t th; if(hop) pthread_create(&th,0,reader,0);
  long long *lat=malloc(N*sizeof(long long)); char buf[4096];
  for(int i=0;i<N;i++){
    const char*f=(i%2)?b:a; int wd=inotify_add_watch(ifd,f,IN_MOVE_SELF|IN_DELETE_SELF|IN_ONLYDIR);
    if(hop){pthread_mutex_lock(&m);fired=0;pthread_mutex_unlock(&m);}
    __sync_synchronize(); *turn=2*i+1;
    if(hop){pthread_mutex_lock(&m);while(!fired)pthread_cond_wait(&c,&m);pthread_mutex_unlock(&m);}
    else{struct pollfd pf={ifd,POLLIN,0};ppoll(&pf,1,0,0);while(read(ifd,buf,sizeof buf)>0);}
    lat[i]=now()-shared[i];
    inotify_rm_watch(ifd,wd);
    if(!hop) while(read(ifd,buf,sizeof buf)>0);
    *turn=2*i+2;
  }
  waitpid(p,0,0); qsort(lat,N,sizeof(long long),cmp);
  printf("%s: median %.1f us, p90 %.1f us\n",hop?"hop (reader thread + condvar)":"direct (ppoll)",lat[N/2]/1000.0,lat[N*9/10]/1000.0);
}
